"""Basalt's own key routes (what the console's Keys page uses): create, list, revoke,
limits and retrieval filter over HTTP for administrator keys; the usage report per
minute; a customization job's loss curve route."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from basalt_support import CHAT_MODEL, http_request


def call(server, method, path, token, body=None):
    data = b"" if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return http_request(server.port, method, path, data, headers)


@pytest.fixture(scope="module")
def admin(server):
    data = server.cli_json("keys", "create", "--name", f"admin-{uuid.uuid4().hex[:6]}", "--admin", "--json")
    return data["bearer_token"]


def test_admin_creates_lists_and_revokes_a_key(server, admin):
    name = f"made-over-http-{uuid.uuid4().hex[:6]}"
    r = call(server, "POST", "/basalt/v1/keys", admin, {"name": name})
    assert r.status == 201, r.body
    issued = r.json()
    for field in ("keyId", "accessKeyId", "secretAccessKey", "bearerToken"):
        assert isinstance(issued[field], str) and issued[field], f"the created key lacks {field}: {issued}"
    assert issued["isAdmin"] is False

    # The new key works at once, as a bearer token on the OpenAI dialect.
    models = call(server, "GET", "/v1/models", issued["bearerToken"])
    assert models.status == 200, models.body

    listed = call(server, "GET", "/basalt/v1/keys", admin)
    assert listed.status == 200
    mine = [k for k in listed.json()["keys"] if k["keyId"] == issued["keyId"]]
    assert len(mine) == 1 and mine[0]["name"] == name and mine[0]["revokedAt"] is None
    text = listed.body.decode()
    assert issued["secretAccessKey"] not in text and issued["bearerToken"] not in text, \
        "the key list must not carry secrets"

    r = call(server, "DELETE", f"/basalt/v1/keys/{issued['keyId']}", admin)
    assert r.status == 204, r.body
    refused = call(server, "GET", "/v1/models", issued["bearerToken"])
    assert refused.status == 401, "a revoked key must be refused at once"
    again = call(server, "DELETE", f"/basalt/v1/keys/{issued['keyId']}", admin)
    assert again.status == 404 and again.headers.get("x-amzn-errortype", "").startswith("ResourceNotFoundException")


def test_limits_and_retrieval_filter_over_http(server, admin, create_key):
    k = create_key(f"limited-{uuid.uuid4().hex[:6]}")
    r = call(server, "PUT", f"/basalt/v1/keys/{k.id}/limits", admin,
             {"requestsPerMinute": 7, "monthlyBudgetUsd": 1.5})
    assert r.status == 200, r.body
    assert r.json()["requestsPerMinute"] == 7 and r.json()["monthlyBudgetUsd"] == 1.5
    f = {"equals": {"key": "tenant", "value": "acme"}}
    r = call(server, "PUT", f"/basalt/v1/keys/{k.id}/retrieval-filter", admin, {"filter": f})
    assert r.status == 200, r.body
    assert r.json()["retrievalFilter"] == f
    bad = call(server, "PUT", f"/basalt/v1/keys/{k.id}/retrieval-filter", admin, {"filter": {"nonsense": 1}})
    assert bad.status == 400 and bad.headers["x-amzn-errortype"].startswith("ValidationException"), bad.body
    r = call(server, "PUT", f"/basalt/v1/keys/{k.id}/retrieval-filter", admin, {"filter": None})
    assert r.status == 200 and r.json()["retrievalFilter"] is None


def test_key_routes_refuse_non_admin_keys_and_bad_input(server, admin, key):
    for method, path, body in [
        ("GET", "/basalt/v1/keys", None),
        ("POST", "/basalt/v1/keys", {"name": "x"}),
        ("DELETE", f"/basalt/v1/keys/{key.id}", None),
        ("PUT", f"/basalt/v1/keys/{key.id}/retrieval-filter", {"filter": None}),
    ]:
        r = call(server, method, path, key.bearer_token, body)
        assert r.status == 403 and r.headers["x-amzn-errortype"].startswith("AccessDeniedException"), (method, path, r.body)
    for body in [{"name": ""}, {"name": "x" * 65}, {"name": "ok", "extra": 1}, {"isAdmin": True}]:
        r = call(server, "POST", "/basalt/v1/keys", admin, body)
        assert r.status == 400 and r.headers["x-amzn-errortype"].startswith("ValidationException"), (body, r.body)
    r = http_request(server.port, "POST", "/basalt/v1/keys", b"{not json",
                     {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
    assert r.status == 400


def test_usage_per_minute(server, admin, runtime):
    runtime.converse(modelId=CHAT_MODEL, messages=[{"role": "user", "content": [{"text": "Hi"}]}],
                     inferenceConfig={"maxTokens": 4, "temperature": 0})
    now = int(time.time() * 1000)
    deadline = time.monotonic() + 10
    while True:
        r = call(server, "GET", f"/basalt/v1/usage?since={now - 600_000}&until={now + 60_000}&by=minute", admin)
        assert r.status == 200, r.body
        groups = r.json()["groups"]
        if groups or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert groups, "the converse call must appear in the per-minute report"
    assert all(g["bucket_start_ms"] % 60_000 == 0 for g in groups)
    too_long = call(server, "GET", f"/basalt/v1/usage?since={now - 2 * 86_400_000}&until={now}&by=minute", admin)
    assert too_long.status == 400 and b"24 hours" in too_long.body


def test_loss_curve_of_an_unknown_job_is_not_found(server, key):
    r = call(server, "GET", "/basalt/v1/model-customization-jobs/abcdefghijkl/loss-curve", key.bearer_token)
    assert r.status == 404 and r.headers["x-amzn-errortype"].startswith("ResourceNotFoundException"), r.body
