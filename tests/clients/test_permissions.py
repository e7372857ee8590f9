"""Per-key permissions (an IAM-style policy on a key) and the audit log.

A key with a policy may do what a statement allows and no statement denies, on every
resource the request names; anything else is Bedrock's AccessDeniedException (403)
naming the action and the resource, or the OpenAI dialect's 403 — through boto3, the
OpenAI client and the console alike (one check for every route). A policy can
require a guardrail on every invocation (IAM's `bedrock:GuardrailIdentifier`
condition). Policies that cannot be evaluated exactly are refused when set, naming
what is not supported. Control-plane changes — and refused attempts at them — land in
the audit log (who, what, on what, when, with which status), which only
administrators read: over HTTP with paging, and with `basalt audit`."""

from __future__ import annotations

import json
import time
import uuid

import openai
import pytest
from botocore.exceptions import ClientError

from basalt_support import CHAT_MODEL, EMBED_MODEL, user_msg
from test_admin_keys import call

REGION = "us-east-1"
MODEL_ARN = f"arn:aws:bedrock:{REGION}::foundation-model/{CHAT_MODEL}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def admin(server):
    return server.cli_json("keys", "create", "--name", unique("perm-admin"), "--admin", "--json")


def policy_key(server, policy: dict) -> dict:
    key = server.cli_json("keys", "create", "--name", unique("perm"), "--json")
    server.cli("keys", "update", key["id"], "--policy", json.dumps(policy))
    return key


def denial(call_it) -> dict:
    with pytest.raises(ClientError) as raised:
        call_it()
    return raised.value.response["Error"]


def converse(runtime, **extra):
    return runtime.converse(modelId=CHAT_MODEL, messages=[user_msg("Say hi.")],
                            inferenceConfig={"maxTokens": 4, "temperature": 0}, **extra)


INVOKE_ONLY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "bedrock:InvokeModel",
         "Resource": "arn:aws:bedrock:*::foundation-model/huggingfacetb.*"},
        {"Effect": "Allow", "Action": ["bedrock:List*", "bedrock:Get*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "bedrock:DeleteGuardrail", "Resource": "*"},
    ],
}


def test_a_policy_allows_what_it_names_and_denies_the_rest_by_name(server, make_client, admin):
    key = policy_key(server, INVOKE_ONLY)
    creds = {"access_key_id": key["access_key_id"], "secret_access_key": key["secret_access_key"]}
    runtime = make_client("bedrock-runtime", **creds)
    control = make_client("bedrock", **creds)

    assert converse(runtime)["stopReason"] in ("end_turn", "max_tokens")
    error = denial(lambda: runtime.converse_stream(modelId=CHAT_MODEL, messages=[user_msg("Hi")],
                                                   inferenceConfig={"maxTokens": 2}))
    assert error["Code"] == "AccessDeniedException", error
    assert "bedrock:InvokeModelWithResponseStream" in error["Message"] and MODEL_ARN in error["Message"], error
    error = denial(lambda: runtime.invoke_model(
        modelId=EMBED_MODEL, body=json.dumps({"inputText": "hello"}), contentType="application/json"))
    assert error["Code"] == "AccessDeniedException" and EMBED_MODEL in error["Message"], \
        f"a model outside the policy's resources must be refused: {error}"

    control.list_guardrails()  # bedrock:List* on "*"
    error = denial(lambda: control.create_guardrail(
        name=unique("denied"), blockedInputMessaging="no", blockedOutputsMessaging="no",
        wordPolicyConfig={"wordsConfig": [{"text": "forbidden"}]}))
    assert error["Code"] == "AccessDeniedException" and "bedrock:CreateGuardrail" in error["Message"], error
    assert "no identity-based policy allows" in error["Message"], error

    # An explicit deny wins over the Get*/List* allow and names itself.
    made = make_client("bedrock", access_key_id=admin["access_key_id"],
                       secret_access_key=admin["secret_access_key"]).create_guardrail(
        name=unique("kept"), blockedInputMessaging="no", blockedOutputsMessaging="no",
        wordPolicyConfig={"wordsConfig": [{"text": "forbidden"}]})
    control.get_guardrail(guardrailIdentifier=made["guardrailId"])
    error = denial(lambda: control.delete_guardrail(guardrailIdentifier=made["guardrailId"]))
    assert "explicit deny" in error["Message"] and made["guardrailId"] in error["Message"], error


def test_the_openai_dialect_meets_the_same_policy(server):
    key = policy_key(server, INVOKE_ONLY)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key["bearer_token"], max_retries=0)
    out = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}],
                                         max_tokens=3)
    assert out.choices[0].message.content is not None
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=3, stream=True)
    assert "bedrock:InvokeModelWithResponseStream" in str(raised.value), raised.value
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model=EMBED_MODEL, input=["hello"])


def test_a_policy_can_require_a_guardrail_on_every_invocation(server, make_client, admin):
    control = make_client("bedrock", access_key_id=admin["access_key_id"],
                          secret_access_key=admin["secret_access_key"])
    g = control.create_guardrail(name=unique("required"), blockedInputMessaging="blocked",
                                 blockedOutputsMessaging="blocked",
                                 wordPolicyConfig={"wordsConfig": [{"text": "forbidden"}]})
    version = control.create_guardrail_version(guardrailIdentifier=g["guardrailId"])["version"]
    required = f"{g['guardrailArn']}:{version}"
    key = policy_key(server, {"Statement": [
        {"Effect": "Allow", "Action": "bedrock:InvokeModel*", "Resource": "*",
         "Condition": {"StringEquals": {"bedrock:GuardrailIdentifier": required}}},
    ]})
    runtime = make_client("bedrock-runtime", access_key_id=key["access_key_id"],
                          secret_access_key=key["secret_access_key"])
    error = denial(lambda: converse(runtime))
    assert error["Code"] == "AccessDeniedException" and "(no guardrail)" in error["Message"], error
    error = denial(lambda: converse(runtime, guardrailConfig={
        "guardrailIdentifier": g["guardrailId"], "guardrailVersion": "DRAFT"}))
    assert f"guardrail/{g['guardrailId']}:DRAFT" in error["Message"], \
        f"another version of the guardrail must not do: {error}"
    out = converse(runtime, guardrailConfig={"guardrailIdentifier": g["guardrailId"],
                                             "guardrailVersion": version})
    assert out["stopReason"] in ("end_turn", "max_tokens", "guardrail_intervened"), out


def test_a_policy_that_cannot_be_evaluated_is_refused_when_set(server, admin):
    key = server.cli_json("keys", "create", "--name", unique("bad-policy"), "--json")
    bad = {"Statement": [{"Effect": "Allow", "NotAction": "bedrock:InvokeModel", "Resource": "*"}]}
    r = call(server, "PUT", f"/basalt/v1/keys/{key['id']}/policy", admin["bearer_token"], {"policy": bad})
    assert r.status == 400 and r.headers.get("x-amzn-errortype", "").startswith("ValidationException"), r.body
    assert "NotAction" in r.json()["message"], r.json()
    cp = server.cli("keys", "update", key["id"], "--policy",
                    json.dumps({"Statement": [{"Effect": "Allow", "Action": "x:y", "Resource": "*",
                                               "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}),
                    check=False)
    assert cp.returncode != 0 and "IpAddress" in cp.stderr, cp.stderr
    good = {"Statement": [{"Effect": "Allow", "Action": "bedrock:ListFoundationModels", "Resource": "*"}]}
    r = call(server, "PUT", f"/basalt/v1/keys/{key['id']}/policy", admin["bearer_token"], {"policy": good})
    assert r.status == 200 and r.json()["policy"] == good, r.body
    models = call(server, "GET", "/v1/models", key["bearer_token"])
    assert models.status == 200, models.body
    chat = call(server, "POST", "/v1/chat/completions", key["bearer_token"],
                {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert chat.status == 403 and chat.json()["error"]["type"] == "permission_error", chat.body
    r = call(server, "PUT", f"/basalt/v1/keys/{key['id']}/policy", admin["bearer_token"], {"policy": None})
    assert r.status == 200 and r.json()["policy"] is None, r.body
    chat = call(server, "POST", "/v1/chat/completions", key["bearer_token"],
                {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert chat.status == 200, f"a key whose policy is removed may do everything again: {chat.body}"


def test_changes_and_refused_attempts_land_in_the_audit_log(server, make_client, admin):
    started = int(time.time() * 1000) - 1
    key = policy_key(server, INVOKE_ONLY)
    control = make_client("bedrock", access_key_id=admin["access_key_id"],
                          secret_access_key=admin["secret_access_key"])
    name = unique("audited")
    g = control.create_guardrail(name=name, blockedInputMessaging="no", blockedOutputsMessaging="no",
                                 wordPolicyConfig={"wordsConfig": [{"text": "forbidden"}]})
    denied = make_client("bedrock", access_key_id=key["access_key_id"],
                         secret_access_key=key["secret_access_key"])
    denial(lambda: denied.delete_guardrail(guardrailIdentifier=g["guardrailId"]))
    make_client("bedrock-runtime", access_key_id=key["access_key_id"],
                secret_access_key=key["secret_access_key"]).converse(
        modelId=CHAT_MODEL, messages=[user_msg("Hi")], inferenceConfig={"maxTokens": 2})
    server.cli("keys", "revoke", key["id"])

    r = call(server, "GET", f"/basalt/v1/audit?since={started}&maxResults=1000", admin["bearer_token"])
    assert r.status == 200, r.body
    entries = r.json()["entries"]
    arn = g["guardrailArn"]
    created = [e for e in entries if e["action"] == "bedrock:CreateGuardrail" and e["keyName"] == admin["name"]]
    assert created and created[-1]["status"] in (200, 201, 202), f"the admin's change must be audited: {entries}"
    refused = [e for e in entries if e["action"] == "bedrock:DeleteGuardrail" and arn in e["resource"]]
    assert refused and refused[-1]["status"] == 403 and refused[-1]["keyName"] == key["name"], \
        f"a refused change must be audited with its status: {entries}"
    assert not [e for e in entries if e["action"].startswith("bedrock:InvokeModel")], \
        "invocations are metered, not audited"
    revoked = [e for e in entries if e["action"] == "basalt:RevokeKey" and key["id"] in e["resource"]]
    assert revoked and revoked[-1]["source"] == "cli" and revoked[-1]["keyName"].startswith("cli:"), entries

    # Pages: one entry at a time, every entry once.
    seen, token = [], None
    for _ in range(len(entries) + 2):
        path = f"/basalt/v1/audit?since={started}&maxResults=1" + (f"&nextToken={token}" if token else "")
        page = call(server, "GET", path, admin["bearer_token"]).json()
        seen += page["entries"]
        token = page["nextToken"]
        if token is None:
            break
    assert [e["requestId"] for e in seen] == [e["requestId"] for e in entries], "paging must return every entry once"

    listed = server.cli_json("audit", "--since", "1h", "--key", key["name"], "--json")
    assert {e["action"] for e in listed} >= {"bedrock:DeleteGuardrail"}, listed

    user = server.cli_json("keys", "create", "--name", unique("not-admin"), "--json")
    r = call(server, "GET", "/basalt/v1/audit", user["bearer_token"])
    assert r.status == 403, "only administrators read the audit log"


def test_the_console_meets_the_same_policy(server):
    """The console acts through the API as its signed-in key: a page whose API call the
    key's policy denies shows the API's refusal, and nothing is listed."""
    import html
    import re

    import httpx

    key = policy_key(server, {"Statement": [
        {"Effect": "Deny", "Action": "bedrock:ListGuardrails", "Resource": "*"},
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
    ]})
    with httpx.Client(base_url=server.url, follow_redirects=True, timeout=60) as browser:
        form = browser.get("/console/sign-in")
        assert form.status_code == 200, form.text[:300]
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, "the sign-in form has no CSRF field"
        signed = browser.post("/console/sign-in", data={"csrf": csrf.group(1), "token": key["bearer_token"]})
        assert signed.status_code == 200 and "sign-in" not in str(signed.url), signed.url
        page = html.unescape(browser.get("/console/guardrails").text)
        assert "not authorized to perform: bedrock:ListGuardrails" in page, \
            "the console's guardrails page must show the API's refusal of the key's policy"
