"""Agents whose action group runs on an MCP server (beyond Bedrock): the Lambda ARN's
function name selects an executor with `protocol = "mcp"`; without a schema, the
group's functions are the server's `tools/list`; each action is a `tools/call`.
The server is the official Python SDK's (mcp_double.py); the model is the scripted
OpenAI double."""
from __future__ import annotations

import pytest

from agent_support import (  # noqa: F401  (fixtures)
    CHAT, UPSTREAM, clients_for, create_agent, double, drain, fresh, front_env, lambda_arn, models_toml, new_key,
    prepare, session_id, tool_messages, tool_names, tool_schema, TEST_ALIAS,
)
from conftest import serve_front
from mcp_double import McpDouble

MCP_EXECUTOR = "weather-mcp"
DOWN_MCP = "down-mcp"


@pytest.fixture(scope="module")
def mcp():
    m = McpDouble()
    yield m
    m.close()


@pytest.fixture(scope="module")
def front(double, mcp, tmp_path_factory, _hermetic_client_env):
    agents = f"""
[agents]
max_steps = 4

[agents.executors.{MCP_EXECUTOR}]
url = "{mcp.url}"
protocol = "mcp"
timeout_secs = 10

[agents.executors.{DOWN_MCP}]
url = "http://127.0.0.1:9/mcp"
protocol = "mcp"
timeout_secs = 2
"""
    yield from serve_front(tmp_path_factory, "agents-mcp-front", models_toml(double) + agents, front_env())


@pytest.fixture(scope="module")
def clients(front):
    return clients_for(front, new_key(front, fresh("mcp-admin")))


@pytest.fixture(autouse=True)
def _fresh(double, mcp):
    double.reset()
    mcp.reset()
    yield


def mcp_agent(cp) -> tuple[str, dict]:
    agent_id = create_agent(cp)["agentId"]
    group = cp.create_agent_action_group(
        agentId=agent_id, agentVersion="DRAFT", actionGroupName="weather",
        actionGroupExecutor={"lambda": lambda_arn(MCP_EXECUTOR)})["agentActionGroup"]
    prepared = prepare(cp, agent_id)
    assert prepared["agentStatus"] == "PREPARED", prepared.get("failureReasons")
    return agent_id, group


def test_the_mcp_servers_tools_become_the_groups_functions(clients):
    _, group = mcp_agent(clients.cp)
    functions = {f["name"]: f for f in group["functionSchema"]["functions"]}
    assert sorted(functions) == ["get_weather", "station_status"], functions
    assert functions["get_weather"]["description"] == "The current weather in a city"
    params = functions["get_weather"]["parameters"]
    assert params["city"] == {"type": "string", "required": True} or (
        params["city"]["type"] == "string" and params["city"]["required"] is True), params
    assert params["unit"]["required"] is False, params


def test_an_action_is_a_tools_call(clients, double, mcp):
    agent_id, _ = mcp_agent(clients.cp)
    double.script(UPSTREAM, [{"tool_calls": [{"name": "weather__get_weather", "arguments": {"city": "Oslo"}}]},
                             {"text": "It is sunny in Oslo."}])
    turn = drain(clients.rt.invoke_agent(agentId=agent_id, agentAliasId=TEST_ALIAS, sessionId=session_id(),
                                         inputText="Weather in Oslo?", enableTrace=True))
    assert turn.error is None and turn.text == "It is sunny in Oslo.", turn.error
    first = double.chat_requests(UPSTREAM)[0]
    assert "weather__get_weather" in tool_names(first), tool_names(first)
    schema = tool_schema(first, "weather__get_weather")
    assert schema["properties"]["city"]["type"] == "string" and "city" in schema.get("required", []), (
        f"the model gets the MCP tool's input schema: {schema}")
    assert mcp.calls == [("get_weather", {"city": "Oslo", "unit": "C"})], mcp.calls
    results = tool_messages(double.chat_requests(UPSTREAM)[1])
    assert [m["content"] for m in results] == ["Sunny and 21 C in Oslo"], results


def test_a_tool_error_and_a_dead_server_are_failure_observations(clients, double, mcp):
    agent_id, _ = mcp_agent(clients.cp)
    double.script(UPSTREAM, [{"tool_calls": [{"name": "weather__station_status", "arguments": {}}]},
                             {"text": "The station is down."}])
    turn = drain(clients.rt.invoke_agent(agentId=agent_id, agentAliasId=TEST_ALIAS, sessionId=session_id(),
                                         inputText="Is the station up?"))
    assert turn.error is None and turn.text == "The station is down."
    content = tool_messages(double.chat_requests(UPSTREAM)[1])[0]["content"]
    assert content.startswith("The action failed") and "offline" in content, content


def test_an_unreachable_mcp_server_is_refused_when_the_group_is_created(clients):
    agent_id = create_agent(clients.cp)["agentId"]
    with pytest.raises(clients.cp.exceptions.ValidationException) as e:
        clients.cp.create_agent_action_group(
            agentId=agent_id, agentVersion="DRAFT", actionGroupName="weather",
            actionGroupExecutor={"lambda": lambda_arn(DOWN_MCP)})
    assert "could not be reached" in str(e.value) or "did not finish" in str(e.value), str(e.value)
