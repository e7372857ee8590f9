"""On-demand quotas and budgets, set per key with the CLI (`basalt keys create/update
--rpm/--tpm/--budget`) and the admin route, seen through boto3 and the OpenAI client.

Exact counting at the limits and window roll-over are unit-tested in
crates/basalt-core/src/quotas.rs with a hand-moved clock; these tests check the
wiring and the error shapes. A test that needs several requests in one minute waits
out the last seconds of a minute first, so a window boundary cannot fall between
them (no timing is asserted)."""
import json
import time
import uuid

import openai
import pytest

from basalt_support import CHAT_MODEL, expect_client_error, http_request, user_msg


def quota_key(server, make_client, *limits):
    name = f"quota-{uuid.uuid4().hex[:8]}"
    data = server.cli_json("keys", "create", "--name", name, "--json", *limits)
    from conftest import Key

    key = Key(id=data["id"], name=name, access_key_id=data["access_key_id"],
              secret_access_key=data["secret_access_key"], bearer_token=data["bearer_token"])
    return key, make_client("bedrock-runtime", key)


def tiny(runtime, max_tokens=1):
    return runtime.converse(modelId=CHAT_MODEL, messages=[user_msg("Hi")],
                            inferenceConfig={"maxTokens": max_tokens, "temperature": 0})


def away_from_minute_end():
    left = 60 - time.time() % 60
    if left < 8:
        time.sleep(left + 0.5)


def test_requests_per_minute_from_the_cli(server, make_client, make_openai):
    key, runtime = quota_key(server, make_client, "--rpm", "2")
    away_from_minute_end()
    tiny(runtime)
    tiny(runtime)
    err = expect_client_error(lambda: tiny(runtime), "ThrottlingException", 429,
                              message_contains="requests-per-minute quota (2)")
    assert key.name in err.response["Error"]["Message"]
    client = make_openai(key.bearer_token)
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
    response = excinfo.value.response
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    # A change made with the CLI applies to the running server at once.
    server.cli("keys", "update", key.id, "--rpm", "none")
    tiny(runtime)


def test_tokens_per_minute_count_max_tokens_up_front(server, make_client):
    key, runtime = quota_key(server, make_client, "--tpm", "60")
    err = expect_client_error(lambda: tiny(runtime, max_tokens=100), "ThrottlingException", 429,
                              message_contains="tokens-per-minute quota (60)")
    assert "maxTokens" in err.response["Error"]["Message"]
    resp = tiny(runtime, max_tokens=5)
    assert resp["usage"]["outputTokens"] >= 1


def test_a_spent_budget_stops_the_key(server, make_client, make_openai):
    key, runtime = quota_key(server, make_client, "--budget", "0.0000001")
    tiny(runtime, max_tokens=4)  # spends more than the budget
    expect_client_error(lambda: tiny(runtime), "ServiceQuotaExceededException", 400,
                        message_contains="monthly budget")
    with pytest.raises(openai.RateLimitError) as excinfo:
        make_openai(key.bearer_token).chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
    assert excinfo.value.response.json()["error"]["code"] == "insufficient_quota"
    # Metering writes behind; poll until the two refusals are on record.
    deadline = time.monotonic() + 30
    while True:
        usage = server.cli_json("usage", "--json")
        throttled = sum(r["throttles"] for r in usage["rows"] if r["key_name"] == key.name)
        if throttled >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert throttled == 2, usage["rows"]
    budget = next(b for b in usage["budgets"] if b["key_id"] == key.id)
    assert budget["state"] == "exhausted" and budget["spent_usd"] > budget["budget_usd"]


def test_admin_route_reads_and_sets_limits(server, make_client, key):
    admin = server.cli_json("keys", "create", "--name", f"admin-{uuid.uuid4().hex[:6]}", "--admin", "--json")
    target, runtime = quota_key(server, make_client)
    path = f"/basalt/v1/keys/{target.id}/limits"

    def call(method, token, body=b""):
        return http_request(server.port, method, path, body,
                            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})

    denied = call("GET", key.bearer_token)
    assert denied.status == 403 and denied.headers.get("x-amzn-errortype") == "AccessDeniedException"
    put = call("PUT", admin["bearer_token"], json.dumps({"tokensPerMinute": 60}).encode())
    assert put.status == 200, put.body
    assert json.loads(put.body)["tokensPerMinute"] == 60
    expect_client_error(lambda: tiny(runtime, max_tokens=100), "ThrottlingException", 429)
    got = json.loads(call("GET", admin["bearer_token"]).body)
    assert got["tokensPerMinute"] == 60 and got["requestsPerMinute"] is None
    bad = call("PUT", admin["bearer_token"], b'{"tokensPerMinute": -1}')
    assert bad.status == 400 and bad.headers.get("x-amzn-errortype") == "ValidationException"
    missing = http_request(server.port, "GET", "/basalt/v1/keys/key-nosuchkey/limits", b"",
                           {"Authorization": f"Bearer {admin['bearer_token']}"})
    assert missing.status == 404


def test_cli_refuses_bad_limits(server):
    cp = server.cli("keys", "create", "--name", "bad-limits", "--rpm", "lots", check=False)
    assert cp.returncode != 0 and "--rpm" in cp.stderr
    cp = server.cli("keys", "update", "key-nosuchkey", "--rpm", "3", check=False)
    assert cp.returncode != 0 and "no key" in cp.stderr
