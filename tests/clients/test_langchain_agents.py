"""LangChain's `BedrockAgentsRunnable` (langchain-aws, pinned) against Basalt's Bedrock
Agents, unchanged but for its endpoint URLs: `create_agent` makes the agent, its
RETURN_CONTROL action group from a LangChain tool and prepares it; `invoke` returns the
tool call, the test runs the tool as LangChain's AgentExecutor would and invokes again
with the result as an intermediate step; the agent answers. The foundation model is
the scripted upstream (agent_support.py), so every model decision is the test's."""
from __future__ import annotations

import pytest

from agent_support import (  # noqa: F401  (fixtures)
    CHAT, INSTRUCTION, ROLE_ARN, UPSTREAM, _fresh_doubles, admin, double, executor, fresh, front,
)
from basalt_support import REGION


def test_bedrock_agents_runnable_round_trip(front, admin, double, monkeypatch):
    from langchain_aws.agents import BedrockAgentFinish, BedrockAgentsRunnable
    from langchain_core.tools import tool

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", admin.key["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", admin.key["secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    asked = []

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        asked.append(city)
        return f"It is sunny in {city}."

    # The model calls whatever tool Basalt offers it (LangChain names the action group),
    # then answers with the tool's result.
    double.script(UPSTREAM, [
        lambda body: {"tool_calls": [{"name": body["tools"][0]["function"]["name"], "arguments": {"city": "Paris"}}]},
        lambda body: {"text": "Answer: " + [m for m in body["messages"] if m["role"] == "tool"][-1]["content"]},
    ])
    agent = BedrockAgentsRunnable.create_agent(
        agent_name=fresh("langchain"), agent_resource_role_arn=ROLE_ARN, foundation_model=CHAT,
        instruction=INSTRUCTION, tools=[get_weather], region_name=REGION,
        bedrock_endpoint_url=front.url, runtime_endpoint_url=front.url)
    first = agent.invoke({"input": "What is the weather in Paris?"})
    assert isinstance(first, list) and len(first) == 1, first
    action = first[0]
    assert action.tool == "get_weather" and action.tool_input == {"city": "Paris"}, action
    observation = get_weather.invoke(action.tool_input)
    final = agent.invoke({"input": "What is the weather in Paris?", "intermediate_steps": [(action, observation)]})
    assert isinstance(final, BedrockAgentFinish), final
    assert final.return_values["output"] == "Answer: It is sunny in Paris.", final
    assert asked == ["Paris"]
