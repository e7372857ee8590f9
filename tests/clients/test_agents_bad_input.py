"""Hostile and malformed requests to the agent routes, as raw HTTP (bodies boto3 would
refuse to build): each answered with the modelled ValidationException (or the
route's own not-found), nothing half-written (the agent list is unchanged), and the
server keeps serving."""
from __future__ import annotations

import json

import pytest

from basalt_support import CHAT_MODEL, assert_bedrock_error, http_request


def send(server, key, method: str, path: str, body: bytes):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key.bearer_token}"}
    return http_request(server.port, method, path, body, headers)


def agent_names(server, key) -> set[str]:
    r = send(server, key, "POST", "/agents/", b'{"maxResults": 1000}')
    assert r.status == 200, r.body[:200]
    names, out = set(), r.json()
    names |= {a["agentName"] for a in out["agentSummaries"]}
    while out.get("nextToken"):
        r = send(server, key, "POST", "/agents/", json.dumps({"nextToken": out["nextToken"]}).encode())
        out = r.json()
        names |= {a["agentName"] for a in out["agentSummaries"]}
    return names


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


GOOD = {"agentName": "bad-input-probe", "foundationModel": CHAT_MODEL,
        "instruction": "You are a careful assistant that answers questions about orders."}

CREATE_BODIES = {
    "not-json": b"{not json",
    "array": b"[]",
    "name-number": json.dumps({**GOOD, "agentName": 7}).encode(),
    "name-with-space": json.dumps({**GOOD, "agentName": "bad name"}).encode(),
    "unknown-field": json.dumps({**GOOD, "bogus": True}).encode(),
    "instruction-short": json.dumps({**GOOD, "instruction": "short"}).encode(),
    "instruction-huge": json.dumps({**GOOD, "instruction": "x" * 30_000}).encode(),
    "ttl-negative": json.dumps({**GOOD, "idleSessionTTLInSeconds": -1}).encode(),
    "unknown-model": json.dumps({**GOOD, "foundationModel": "nobody.nothing-v1:0"}).encode(),
    "deep-nesting": ('{"agentName": "x", "promptOverrideConfiguration": ' + deep(5000) + "}").encode(),
    "bad-collaboration": json.dumps({**GOOD, "agentCollaboration": "EVERYONE"}).encode(),
    "prompt-override-string": json.dumps({**GOOD, "promptOverrideConfiguration": "x"}).encode(),
    "prompt-override-list": json.dumps({**GOOD, "promptOverrideConfiguration": [1]}).encode(),
    "prompt-configurations-object": json.dumps(
        {**GOOD, "promptOverrideConfiguration": {"promptConfigurations": {"a": 1}}}).encode(),
}


@pytest.mark.parametrize("body", list(CREATE_BODIES.values()), ids=list(CREATE_BODIES))
def test_bad_create_agent_bodies_are_validation_errors(server, key, body):
    before = agent_names(server, key)
    r = send(server, key, "PUT", "/agents/", body)
    assert_bedrock_error(r, "ValidationException", 400)
    assert agent_names(server, key) == before, "a refused CreateAgent must create nothing"


@pytest.fixture(scope="module")
def agent_id(server, key):
    body = {**GOOD, "agentName": "bad-input-target"}
    r = send(server, key, "PUT", "/agents/", json.dumps(body).encode())
    assert r.status == 202, r.body[:300]
    return r.json()["agent"]["agentId"]


GROUP_BODIES = {
    "no-executor": {"actionGroupName": "g", "functionSchema": {"functions": [{"name": "f"}]}},
    "two-executors": {"actionGroupName": "g", "actionGroupExecutor": {"lambda": "arn:aws:lambda:us-east-1:1:function:f",
                                                                      "customControl": "RETURN_CONTROL"},
                      "functionSchema": {"functions": [{"name": "f"}]}},
    "param-type": {"actionGroupName": "g", "actionGroupExecutor": {"customControl": "RETURN_CONTROL"},
                   "functionSchema": {"functions": [{"name": "f", "parameters": {"p": {"type": "object"}}}]}},
    "function-name": {"actionGroupName": "g", "actionGroupExecutor": {"customControl": "RETURN_CONTROL"},
                      "functionSchema": {"functions": [{"name": "f f"}]}},
    "schema-garbage": {"actionGroupName": "g", "actionGroupExecutor": {"customControl": "RETURN_CONTROL"},
                       "apiSchema": {"payload": "\x00\x01 not openapi"}},
    "schema-yaml-bomb": {"actionGroupName": "g", "actionGroupExecutor": {"customControl": "RETURN_CONTROL"},
                         "apiSchema": {"payload": "a: " + "[" * 100_000}},
    "schema-external-ref": {"actionGroupName": "g", "actionGroupExecutor": {"customControl": "RETURN_CONTROL"},
                            "apiSchema": {"payload": json.dumps({
                                "openapi": "3.0.0", "info": {"title": "t", "version": "1"},
                                "paths": {"/x": {"get": {"operationId": "x", "responses": {"200": {
                                    "description": "ok", "content": {"application/json": {
                                        "schema": {"$ref": "http://evil.example/s.json"}}}}},
                                    "parameters": [{"$ref": "file:///etc/passwd"}]}}}})}},
    "lambda-not-arn": {"actionGroupName": "g", "actionGroupExecutor": {"lambda": "../../etc/passwd"},
                       "functionSchema": {"functions": [{"name": "f"}]}},
}


@pytest.mark.parametrize("body", list(GROUP_BODIES.values()), ids=list(GROUP_BODIES))
def test_bad_action_groups_are_validation_errors(server, key, agent_id, body):
    path = f"/agents/{agent_id}/agentversions/DRAFT/actiongroups/"
    r = send(server, key, "PUT", path, json.dumps(body).encode())
    assert_bedrock_error(r, "ValidationException", 400)
    listed = send(server, key, "POST", path, b"{}").json()["actionGroupSummaries"]
    assert listed == [], f"a refused action group must not be stored: {listed}"


INVOKE_BODIES = {
    "not-json": b"{",
    "input-number": json.dumps({"inputText": 5}).encode(),
    "results-not-list": json.dumps({"sessionState": {"returnControlInvocationResults": {}}}).encode(),
    "six-results": json.dumps({"sessionState": {"invocationId": "x", "returnControlInvocationResults": [
        {"functionResult": {"actionGroup": "g", "function": "f", "responseBody": {"TEXT": {"body": "b"}}}}] * 6}}
    ).encode(),
    "files": json.dumps({"inputText": "hi", "sessionState": {"files": []}}).encode(),
}


@pytest.mark.parametrize("body", list(INVOKE_BODIES.values()), ids=list(INVOKE_BODIES))
def test_bad_invoke_bodies_are_validation_errors(server, key, agent_id, body):
    r = send(server, key, "POST", f"/agents/{agent_id}/agentAliases/TSTALIASID/sessions/s-1/text", body)
    assert_bedrock_error(r, "ValidationException", 400)


def test_unknown_ids_are_not_found_and_bad_ids_refused(server, key, agent_id):
    r = send(server, key, "GET", "/agents/NOSUCHAGNT/", b"")
    assert_bedrock_error(r, "ResourceNotFoundException", 404)
    r = send(server, key, "POST", "/agents/NOSUCHAGNT/agentAliases/TSTALIASID/sessions/s-1/text",
             b'{"inputText": "hi"}')
    assert_bedrock_error(r, "ResourceNotFoundException", 404)
    r = send(server, key, "POST", f"/agents/{agent_id}/agentAliases/TSTALIASID/sessions/%20bad%20/text",
             b'{"inputText": "hi"}')
    assert_bedrock_error(r, "ValidationException", 400)
    r = send(server, key, "POST", f"/agents/{agent_id}/agentAliases/TSTALIASID/sessions/s-1/text",
             b'{"inputText": "hi"}')
    assert_bedrock_error(r, "ValidationException", 400)  # not prepared
