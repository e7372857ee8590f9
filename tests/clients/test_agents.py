"""Bedrock Agents control plane through boto3's `bedrock-agent` client: agents
(create, get, list with pagination, full-replace update, delete), PrepareAgent and
its failures (a model without tool use, an action group whose Lambda names no
configured executor), action groups (function schemas, OpenAPI JSON and YAML,
AMAZON.UserInput, the refused AMAZON.CodeInterpreter), knowledge-base links, aliases
and the versions they snapshot, and tenant keys (which cannot change agents).

The module runs its own front server (see agent_support.py): remote models on a
scripted OpenAI-compatible double and an `[agents]` section."""
from __future__ import annotations

import datetime
import json
import re

import pytest

from agent_support import (  # noqa: F401  (fixtures)
    CHAT, EXECUTOR, ID_RE, INSTRUCTION, NO_TOOLS, RETURN_CONTROL, ROLE_ARN, UNCONFIGURED_EXECUTOR,
    USER_INPUT_GROUP, _fresh_doubles, add_groups, admin, clients_for, cp, create_agent, create_kb, double,
    executor, expect_error, fresh, front, function, function_group, lambda_executor, lax, new_key,
    orders_group, param, prepare, wait_alias, wait_prepared,
)
from basalt_support import UNKNOWN_MODEL

ARN_RE = r"arn:aws:bedrock:us-east-1:\d{12}:"

ORDERS_OPENAPI = {
    "openapi": "3.0.0",
    "info": {"title": "Orders API", "version": "1.0.0"},
    "paths": {
        "/orders": {
            "post": {
                "operationId": "createOrder",
                "description": "Create an order",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"item": {"type": "string"}, "quantity": {"type": "integer"}},
                    "required": ["item"]}}}},
                "responses": {"200": {"description": "the new order",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            }
        },
        "/orders/{orderId}": {
            "get": {
                "operationId": "getOrder",
                "description": "Read an order",
                "parameters": [{"name": "orderId", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the order"}},
            }
        },
    },
}

ORDERS_OPENAPI_YAML = """openapi: 3.0.0
info:
  title: Orders API
  version: 1.0.0
paths:
  /orders/{orderId}:
    get:
      operationId: getOrder
      description: Read an order
      parameters:
        - name: orderId
          in: path
          required: true
          schema:
            type: string
      responses:
        '200':
          description: the order
"""


def status_of(cp, agent_id: str) -> str:
    return cp.get_agent(agentId=agent_id)["agent"]["agentStatus"]


def prepared(cp, agent_id: str) -> dict:
    agent = prepare(cp, agent_id)
    assert agent["agentStatus"] == "PREPARED", f"prepare failed: {agent.get('failureReasons')}"
    return agent


# ------------------------------------------------------------------- agents


def test_create_agent_is_a_not_prepared_draft(cp):
    name = fresh("create")
    resp = cp.create_agent(agentName=name, foundationModel=CHAT, instruction=INSTRUCTION,
                           agentResourceRoleArn=ROLE_ARN, idleSessionTTLInSeconds=900, description="Order desk")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 202, "CreateAgent answers 202"
    agent = resp["agent"]
    agent_id = agent["agentId"]
    assert ID_RE.match(agent_id), f"agentId must be 10 letters and digits: {agent_id!r}"
    assert re.fullmatch(ARN_RE + f"agent/{agent_id}", agent["agentArn"]), agent["agentArn"]
    assert agent["agentVersion"] == "DRAFT", agent
    assert agent["agentStatus"] == "NOT_PREPARED", f"a new agent is NOT_PREPARED, got {agent['agentStatus']}"
    expected = {"agentName": name, "foundationModel": CHAT, "instruction": INSTRUCTION,
                "agentResourceRoleArn": ROLE_ARN, "idleSessionTTLInSeconds": 900, "description": "Order desk"}
    assert {k: agent.get(k) for k in expected} == expected, agent

    got = cp.get_agent(agentId=agent_id)["agent"]
    assert {k: got.get(k) for k in expected} == expected, got
    assert (got["agentId"], got["agentArn"], got["agentVersion"], got["agentStatus"]) == (
        agent_id, agent["agentArn"], "DRAFT", "NOT_PREPARED"), got
    assert isinstance(got["createdAt"], datetime.datetime) and isinstance(got["updatedAt"], datetime.datetime)
    assert "preparedAt" not in got, f"an agent never prepared has no preparedAt: {got.get('preparedAt')}"


def test_a_duplicate_agent_name_conflicts(cp):
    agent = create_agent(cp)
    expect_error(lambda: create_agent(cp, name=agent["agentName"]), "ConflictException", 409)


def test_invalid_agents_are_refused_by_the_server(cp, lax):
    # botocore does not check the name pattern: the server must.
    expect_error(lambda: create_agent(cp, name="bad name!"), "ValidationException", 400)
    # botocore checks these itself; the lax client sends them anyway.
    message = expect_error(lambda: lax.cp.create_agent(agentName=fresh("short"), foundationModel=CHAT,
                                                       instruction="Too short.", agentResourceRoleArn=ROLE_ARN),
                           "ValidationException", 400)
    assert "instruction" in message.lower(), f"the message should name the instruction: {message!r}"
    message = expect_error(lambda: lax.cp.create_agent(foundationModel=CHAT, instruction=INSTRUCTION,
                                                       agentResourceRoleArn=ROLE_ARN),
                           "ValidationException", 400)
    assert "agentname" in message.lower(), f"the message should name agentName: {message!r}"
    expect_error(lambda: create_agent(cp, model=UNKNOWN_MODEL), "ValidationException", 400)


def test_list_agents_pages_one_by_one(cp):
    ours = {create_agent(cp)["agentId"] for _ in range(3)}
    seen, token, pages = [], None, 0
    while True:
        kwargs = {"maxResults": 1} | ({"nextToken": token} if token else {})
        page = cp.list_agents(**kwargs)
        pages += 1
        assert len(page["agentSummaries"]) <= 1, f"maxResults=1 returned {len(page['agentSummaries'])} summaries"
        for s in page["agentSummaries"]:
            for f in ("agentId", "agentName", "agentStatus", "latestAgentVersion", "updatedAt"):
                assert f in s, f"agent summary lacks {f}: {s}"
            assert re.fullmatch(r"DRAFT|\d+", s["latestAgentVersion"]), s
            seen.append(s["agentId"])
        token = page.get("nextToken")
        if not token:
            break
        assert pages < 1000, "ListAgents never stops paging"
    assert len(seen) == len(set(seen)), f"an agent was listed twice across pages: {seen}"
    assert ours <= set(seen), f"agents missing from the listing: {ours - set(seen)}"
    assert pages >= 3, "three agents at one per page need at least three pages"
    summary = next(s for s in cp.list_agents(maxResults=100)["agentSummaries"] if s["agentId"] in ours)
    assert summary["agentStatus"] == "NOT_PREPARED", summary


def test_update_agent_is_a_full_replace_and_unprepares(cp):
    agent = create_agent(cp, description="will be cleared")
    agent_id = agent["agentId"]
    before = prepared(cp, agent_id)
    new_instruction = INSTRUCTION + " Always mention the order id."
    resp = cp.update_agent(agentId=agent_id, agentName=agent["agentName"], foundationModel=CHAT,
                           agentResourceRoleArn=ROLE_ARN, instruction=new_instruction)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 202, "UpdateAgent answers 202"
    assert "description" not in resp["agent"], f"an omitted description is cleared: {resp['agent']}"
    got = cp.get_agent(agentId=agent_id)["agent"]
    assert got["instruction"] == new_instruction, got
    assert "description" not in got, f"an omitted description is cleared: {got.get('description')!r}"
    assert got["agentStatus"] == "NOT_PREPARED", f"an edit of a PREPARED agent unprepares it: {got['agentStatus']}"
    assert got["updatedAt"] >= before["updatedAt"], (got["updatedAt"], before["updatedAt"])
    assert got["createdAt"] == before["createdAt"], "UpdateAgent must not change createdAt"


def test_delete_agent(cp):
    agent_id = create_agent(cp)["agentId"]
    out = cp.delete_agent(agentId=agent_id)
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 202, "DeleteAgent answers 202"
    assert (out["agentId"], out["agentStatus"]) == (agent_id, "DELETING"), out
    expect_error(lambda: cp.get_agent(agentId=agent_id), "ResourceNotFoundException", 404)
    expect_error(lambda: cp.get_agent(agentId="NOSUCHAGNT"), "ResourceNotFoundException", 404)


# ------------------------------------------------------------------- prepare


def test_prepare_agent(cp):
    agent_id = create_agent(cp)["agentId"]
    add_groups(cp, agent_id, [orders_group()])
    out = cp.prepare_agent(agentId=agent_id)
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 202, "PrepareAgent answers 202"
    assert out["agentVersion"] == "DRAFT" and out["agentStatus"] in ("PREPARING", "PREPARED"), out
    agent = wait_prepared(cp, agent_id)
    assert agent["agentStatus"] == "PREPARED", f"{agent['agentStatus']}: {agent.get('failureReasons')}"
    assert isinstance(agent.get("preparedAt"), datetime.datetime), f"a prepared agent has preparedAt: {agent}"
    assert not agent.get("failureReasons"), agent


def test_prepare_fails_for_a_model_without_tool_use(cp):
    agent_id = create_agent(cp, model=NO_TOOLS)["agentId"]
    add_groups(cp, agent_id, [orders_group()])
    agent = prepare(cp, agent_id)
    assert agent["agentStatus"] == "FAILED", f"expected FAILED, got {agent['agentStatus']}"
    reasons = " ".join(agent.get("failureReasons") or [])
    assert NO_TOOLS in reasons, f"failureReasons should name the model {NO_TOOLS}: {agent.get('failureReasons')}"


def test_prepare_fails_for_a_lambda_without_an_executor(cp):
    agent_id = create_agent(cp)["agentId"]
    add_groups(cp, agent_id, [orders_group(lambda_executor(UNCONFIGURED_EXECUTOR))])
    agent = prepare(cp, agent_id)
    assert agent["agentStatus"] == "FAILED", f"expected FAILED, got {agent['agentStatus']}"
    reasons = " ".join(agent.get("failureReasons") or [])
    assert f"[agents.executors.{UNCONFIGURED_EXECUTOR}]" in reasons, (
        f"failureReasons should name the missing config section: {agent.get('failureReasons')}")


def test_prepare_succeeds_for_a_configured_executor(cp):
    agent_id = create_agent(cp)["agentId"]
    add_groups(cp, agent_id, [orders_group(lambda_executor(EXECUTOR))])
    prepared(cp, agent_id)


# ------------------------------------------------------------------- action groups


def test_function_action_group_lifecycle(cp):
    agent_id = create_agent(cp)["agentId"]
    prepared(cp, agent_id)
    group = function_group("orders", [function("get_order", "Look up an order by its id",
                                               order_id=param("string", True, "The order id"))],
                           description="Order tools")
    resp = cp.create_agent_action_group(agentId=agent_id, agentVersion="DRAFT", **group)
    created = resp["agentActionGroup"]
    group_id = created["actionGroupId"]
    assert ID_RE.match(group_id), f"actionGroupId must be 10 letters and digits: {group_id!r}"
    assert (created["agentId"], created["agentVersion"], created["actionGroupName"], created["actionGroupState"]) == (
        agent_id, "DRAFT", "orders", "ENABLED"), created
    assert created["actionGroupExecutor"] == RETURN_CONTROL, created
    assert created["functionSchema"] == group["functionSchema"], created["functionSchema"]
    assert created["description"] == "Order tools"
    assert status_of(cp, agent_id) == "NOT_PREPARED", "adding an action group unprepares the agent"

    got = cp.get_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupId=group_id)["agentActionGroup"]
    assert got["functionSchema"] == group["functionSchema"] and got["actionGroupName"] == "orders", got
    listed = cp.list_agent_action_groups(agentId=agent_id, agentVersion="DRAFT")["actionGroupSummaries"]
    assert [(s["actionGroupId"], s["actionGroupName"], s["actionGroupState"]) for s in listed] == [
        (group_id, "orders", "ENABLED")], listed

    prepared(cp, agent_id)
    new_functions = {"functions": [function("cancel_order", "Cancel an order", order_id=param("string", True))]}
    updated = cp.update_agent_action_group(
        agentId=agent_id, agentVersion="DRAFT", actionGroupId=group_id, actionGroupName="orders",
        actionGroupExecutor=lambda_executor(EXECUTOR), functionSchema=new_functions,
        actionGroupState="DISABLED")["agentActionGroup"]
    assert updated["functionSchema"] == new_functions, updated
    assert updated["actionGroupExecutor"] == lambda_executor(EXECUTOR), updated
    assert updated["actionGroupState"] == "DISABLED", updated
    assert "description" not in updated, f"UpdateAgentActionGroup is a full replace: {updated.get('description')!r}"
    assert status_of(cp, agent_id) == "NOT_PREPARED", "updating an action group unprepares the agent"

    prepared(cp, agent_id)
    out = cp.delete_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupId=group_id)
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 204, "DeleteAgentActionGroup answers 204"
    expect_error(lambda: cp.get_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupId=group_id),
                 "ResourceNotFoundException", 404)
    assert cp.list_agent_action_groups(agentId=agent_id, agentVersion="DRAFT")["actionGroupSummaries"] == []
    assert status_of(cp, agent_id) == "NOT_PREPARED", "deleting an action group unprepares the agent"


def test_api_schema_action_groups_in_json_and_yaml(cp):
    agent_id = create_agent(cp)["agentId"]
    payload = json.dumps(ORDERS_OPENAPI)
    (as_json,) = add_groups(cp, agent_id, [{"actionGroupName": "shop", "actionGroupExecutor": RETURN_CONTROL,
                                            "apiSchema": {"payload": payload}}])
    assert as_json["apiSchema"] == {"payload": payload}, as_json
    (as_yaml,) = add_groups(cp, agent_id, [{"actionGroupName": "shopyaml", "actionGroupExecutor": RETURN_CONTROL,
                                            "apiSchema": {"payload": ORDERS_OPENAPI_YAML}}])
    got = cp.get_agent_action_group(agentId=agent_id, agentVersion="DRAFT",
                                    actionGroupId=as_yaml["actionGroupId"])["agentActionGroup"]
    assert got["apiSchema"] == {"payload": ORDERS_OPENAPI_YAML}, got
    prepared(cp, agent_id)


@pytest.mark.parametrize("payload,names", [
    (json.dumps({"openapi": "3.0.0", "info": {"title": "x", "version": "1"}}), "paths"),
    ("openapi: 3.0.0\npaths: [unclosed", None),
    (json.dumps({"info": {"title": "x", "version": "1"}, "paths": {}}), "openapi"),
], ids=["no-paths", "unparsable", "no-openapi-version"])
def test_an_invalid_api_schema_is_refused(cp, payload, names):
    agent_id = create_agent(cp)["agentId"]
    message = expect_error(lambda: cp.create_agent_action_group(
        agentId=agent_id, agentVersion="DRAFT", actionGroupName="broken", actionGroupExecutor=RETURN_CONTROL,
        apiSchema={"payload": payload}), "ValidationException", 400)
    if names:
        assert names in message, f"the message should name the problem ({names!r}): {message!r}"
    assert cp.list_agent_action_groups(agentId=agent_id, agentVersion="DRAFT")["actionGroupSummaries"] == []


def test_built_in_signatures(cp):
    agent_id = create_agent(cp)["agentId"]
    (user_input,) = add_groups(cp, agent_id, [USER_INPUT_GROUP])
    assert user_input["parentActionSignature"] == "AMAZON.UserInput", user_input
    for absent in ("description", "actionGroupExecutor", "apiSchema", "functionSchema"):
        assert absent not in user_input, f"AMAZON.UserInput has no {absent}: {user_input}"
    prepared(cp, agent_id)
    expect_error(lambda: cp.create_agent_action_group(
        agentId=agent_id, agentVersion="DRAFT", actionGroupName="code",
        parentActionGroupSignature="AMAZON.CodeInterpreter"), "ValidationException", 400,
        message_contains="not supported")


def test_action_groups_are_created_on_draft_only(cp):
    agent_id = create_agent(cp)["agentId"]
    expect_error(lambda: cp.create_agent_action_group(agentId=agent_id, agentVersion="12345", **orders_group()),
                 "ValidationException", 400)
    expect_error(lambda: cp.create_agent_action_group(agentId="NOSUCHAGNT", agentVersion="DRAFT", **orders_group()),
                 "ResourceNotFoundException", 404)


# ------------------------------------------------------------------- knowledge bases


def test_knowledge_base_links(cp):
    agent_id = create_agent(cp)["agentId"]
    kb_id = create_kb(cp)
    prepared(cp, agent_id)
    link = cp.associate_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=kb_id,
                                             description="Who owns which service",
                                             knowledgeBaseState="ENABLED")["agentKnowledgeBase"]
    assert (link["agentId"], link["agentVersion"], link["knowledgeBaseId"], link["description"],
            link["knowledgeBaseState"]) == (agent_id, "DRAFT", kb_id, "Who owns which service", "ENABLED"), link
    assert status_of(cp, agent_id) == "NOT_PREPARED", "linking a knowledge base unprepares the agent"

    got = cp.get_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=kb_id)
    assert got["agentKnowledgeBase"]["description"] == "Who owns which service", got
    listed = cp.list_agent_knowledge_bases(agentId=agent_id, agentVersion="DRAFT")["agentKnowledgeBaseSummaries"]
    assert [(s["knowledgeBaseId"], s["knowledgeBaseState"]) for s in listed] == [(kb_id, "ENABLED")], listed

    updated = cp.update_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=kb_id,
                                             description="Handbook", knowledgeBaseState="DISABLED")
    assert (updated["agentKnowledgeBase"]["description"], updated["agentKnowledgeBase"]["knowledgeBaseState"]) == (
        "Handbook", "DISABLED"), updated
    got = cp.get_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=kb_id)
    assert got["agentKnowledgeBase"]["knowledgeBaseState"] == "DISABLED", got

    out = cp.disassociate_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=kb_id)
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 204, "DisassociateAgentKnowledgeBase answers 204"
    expect_error(lambda: cp.get_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=kb_id),
                 "ResourceNotFoundException", 404)
    assert cp.list_agent_knowledge_bases(agentId=agent_id, agentVersion="DRAFT")["agentKnowledgeBaseSummaries"] == []


def test_linking_an_unknown_knowledge_base_is_not_found(cp):
    agent_id = create_agent(cp)["agentId"]
    expect_error(lambda: cp.associate_agent_knowledge_base(
        agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId="NOSUCHKB00", description="nothing",
        knowledgeBaseState="ENABLED"), "ResourceNotFoundException", 404)


# ------------------------------------------------------------------- aliases and versions


def test_aliases_snapshot_draft_into_numbered_versions(cp):
    agent = create_agent(cp)
    agent_id = agent["agentId"]
    add_groups(cp, agent_id, [orders_group()])
    prepared(cp, agent_id)

    resp = cp.create_agent_alias(agentId=agent_id, agentAliasName="live", description="production")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 202, "CreateAgentAlias answers 202"
    alias = resp["agentAlias"]
    alias_id = alias["agentAliasId"]
    assert ID_RE.match(alias_id), f"agentAliasId must be 10 letters and digits: {alias_id!r}"
    assert re.fullmatch(ARN_RE + f"agent-alias/{agent_id}/{alias_id}", alias["agentAliasArn"]), alias
    assert alias["routingConfiguration"] == [{"agentVersion": "1"}], alias["routingConfiguration"]
    got = wait_alias(cp, agent_id, alias_id)
    assert (got["agentAliasName"], got["agentAliasStatus"], got["routingConfiguration"]) == (
        "live", "PREPARED", [{"agentVersion": "1"}]), got

    version = cp.get_agent_version(agentId=agent_id, agentVersion="1")["agentVersion"]
    assert (version["version"], version["agentName"], version["instruction"], version["foundationModel"]) == (
        "1", agent["agentName"], INSTRUCTION, CHAT), version
    groups = cp.list_agent_action_groups(agentId=agent_id, agentVersion="1")["actionGroupSummaries"]
    assert [g["actionGroupName"] for g in groups] == ["orders"], f"version 1 snapshots DRAFT's action groups: {groups}"
    versions = {v["agentVersion"] for v in cp.list_agent_versions(agentId=agent_id)["agentVersionSummaries"]}
    assert versions == {"DRAFT", "1"}, versions

    updated = cp.update_agent_alias(agentId=agent_id, agentAliasId=alias_id, agentAliasName="live")["agentAlias"]
    assert updated["routingConfiguration"] == [{"agentVersion": "2"}], (
        f"UpdateAgentAlias without routingConfiguration snapshots a new version: {updated['routingConfiguration']}")
    versions = {v["agentVersion"] for v in cp.list_agent_versions(agentId=agent_id)["agentVersionSummaries"]}
    assert versions == {"DRAFT", "1", "2"}, versions

    pinned = cp.update_agent_alias(agentId=agent_id, agentAliasId=alias_id, agentAliasName="live",
                                   routingConfiguration=[{"agentVersion": "1"}])["agentAlias"]
    assert pinned["routingConfiguration"] == [{"agentVersion": "1"}], pinned
    versions = {v["agentVersion"] for v in cp.list_agent_versions(agentId=agent_id)["agentVersionSummaries"]}
    assert versions == {"DRAFT", "1", "2"}, f"routing to an existing version makes no new one: {versions}"

    aliases = cp.list_agent_aliases(agentId=agent_id)["agentAliasSummaries"]
    ours = [a for a in aliases if a["agentAliasId"] == alias_id]
    assert len(ours) == 1 and ours[0]["agentAliasStatus"] == "PREPARED" and ours[0]["agentAliasName"] == "live", aliases

    out = cp.delete_agent_alias(agentId=agent_id, agentAliasId=alias_id)
    assert (out["agentAliasId"], out["agentAliasStatus"]) == (alias_id, "DELETING"), out
    expect_error(lambda: cp.get_agent_alias(agentId=agent_id, agentAliasId=alias_id), "ResourceNotFoundException", 404)

    out = cp.delete_agent_version(agentId=agent_id, agentVersion="2")
    assert (out["agentVersion"], out["agentStatus"]) == ("2", "DELETING"), out
    expect_error(lambda: cp.get_agent_version(agentId=agent_id, agentVersion="2"), "ResourceNotFoundException", 404)
    versions = {v["agentVersion"] for v in cp.list_agent_versions(agentId=agent_id)["agentVersionSummaries"]}
    assert versions == {"DRAFT", "1"}, versions


def test_a_second_alias_gets_the_next_version(cp):
    agent_id = create_agent(cp)["agentId"]
    prepared(cp, agent_id)
    first = cp.create_agent_alias(agentId=agent_id, agentAliasName="blue")["agentAlias"]
    second = cp.create_agent_alias(agentId=agent_id, agentAliasName="green")["agentAlias"]
    assert (first["routingConfiguration"], second["routingConfiguration"]) == (
        [{"agentVersion": "1"}], [{"agentVersion": "2"}]), (first, second)
    expect_error(lambda: cp.get_agent_version(agentId=agent_id, agentVersion="3"), "ResourceNotFoundException", 404)


# ------------------------------------------------------------------- tenant keys


def test_tenant_keys_cannot_change_agents(front, cp):
    tenant = clients_for(front, new_key(front, fresh("agent-tenant"), {"equals": {"key": "team", "value": "b"}}))
    expect_error(lambda: create_agent(tenant.cp), "AccessDeniedException", 403)
    agent_id = create_agent(cp)["agentId"]
    expect_error(lambda: tenant.cp.delete_agent(agentId=agent_id), "AccessDeniedException", 403)
    expect_error(lambda: tenant.cp.create_agent_action_group(agentId=agent_id, agentVersion="DRAFT", **orders_group()),
                 "AccessDeniedException", 403)
    assert cp.get_agent(agentId=agent_id)["agent"]["agentStatus"] == "NOT_PREPARED", "the agent survived"
