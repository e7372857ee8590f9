"""Metering: `basalt usage --json` and the Prometheus /metrics endpoint."""

import json
import re
import time

from basalt_support import CHAT_MODEL, EMBED_DIMS, EMBED_MODEL, user_msg

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def usage_rows(server) -> list:
    data = server.cli_json("usage", "--json")
    assert isinstance(data, dict) and isinstance(data.get("rows"), list), (
        f"usage --json must print an object with a 'rows' array, got {data!r}"
    )
    return data["rows"]


def find_row(rows, key_name, model_id, inference_type="ON_DEMAND"):
    """The row of one key, model and inference type (batch jobs have their own rows)."""
    matches = [r for r in rows if r.get("key_name") == key_name and r.get("model_id") == model_id
               and r.get("inference_type") == inference_type]
    assert len(matches) <= 1, f"several usage rows for ({key_name}, {model_id}, {inference_type}): {matches}"
    return matches[0] if matches else None


def wait_for_row(server, key_name, model_id, min_invocations=1, timeout=15.0):
    """Metering may be written asynchronously: poll (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = usage_rows(server)
        row = find_row(rows, key_name, model_id)
        if row is not None and row.get("invocations", 0) >= min_invocations:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no usage row with invocations >= {min_invocations} for "
                f"({key_name}, {model_id}); rows: {rows}"
            )
        time.sleep(0.5)


def check_row_fields(row):
    for f in ("key_name", "model_id", "invocations", "input_tokens", "output_tokens", "cost_usd"):
        assert f in row, f"usage row lacks {f!r}: {row}"
    for f in ("invocations", "input_tokens", "output_tokens"):
        assert isinstance(row[f], int) and row[f] >= 0, f"{f}={row[f]!r}"
    assert isinstance(row["cost_usd"], (int, float)) and row["cost_usd"] >= 0, row["cost_usd"]


def test_usage_for_tests_key(server, runtime):
    runtime.converse(
        modelId=CHAT_MODEL,
        messages=[user_msg("Count me, please.")],
        inferenceConfig={"maxTokens": 3, "temperature": 0.0},
    )
    row = wait_for_row(server, "tests", CHAT_MODEL)
    check_row_fields(row)
    assert row["invocations"] >= 1, row
    assert row["input_tokens"] > 0, row
    assert row["output_tokens"] > 0, row


def test_usage_is_exact_for_a_fresh_key(server, create_key, make_client):
    k = create_key("metering")
    client = make_client("bedrock-runtime", k)
    rows = usage_rows(server)
    assert find_row(rows, "metering", CHAT_MODEL) is None, "fresh key already has usage"

    resp = client.converse(
        modelId=CHAT_MODEL,
        messages=[user_msg("Tell me about rivers.")],
        inferenceConfig={"maxTokens": 6, "temperature": 0.0},
    )
    row = wait_for_row(server, "metering", CHAT_MODEL)
    check_row_fields(row)
    assert row["invocations"] == 1, f"one call, {row['invocations']} invocations metered"
    assert row["input_tokens"] == resp["usage"]["inputTokens"], (row, resp["usage"])
    assert row["output_tokens"] == resp["usage"]["outputTokens"], (row, resp["usage"])

    out = json.loads(
        client.invoke_model(
            modelId=EMBED_MODEL,
            body=json.dumps({"inputText": "meter this", "dimensions": EMBED_DIMS, "normalize": True}),
            contentType="application/json",
            accept="application/json",
        )["body"].read()
    )
    erow = wait_for_row(server, "metering", EMBED_MODEL)
    check_row_fields(erow)
    assert erow["invocations"] == 1, erow
    assert erow["input_tokens"] == out["inputTextTokenCount"], (erow, out["inputTextTokenCount"])


def _metric_sum(text: str, name: str) -> float:
    total = 0.0
    found = False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if m and m.group(1) == name:
            found = True
            total += float(m.group(3))
    assert found, f"/metrics has no {name} sample"
    return total


def _metrics(raw_get) -> str:
    r = raw_get("/metrics")
    assert r.status == 200, f"GET /metrics (no auth) returned HTTP {r.status}"
    return r.body.decode()


def _tiny(runtime):
    return runtime.converse(
        modelId=CHAT_MODEL,
        messages=[user_msg("Metrics test.")],
        inferenceConfig={"maxTokens": 2, "temperature": 0.0},
    )


def test_prometheus_metrics(raw_get, runtime):
    _tiny(runtime)  # make sure the labelled counters have samples
    before = _metrics(raw_get)
    assert "basalt_invocations_total" in before
    assert "basalt_input_tokens_total" in before
    inv0 = _metric_sum(before, "basalt_invocations_total")
    tok0 = _metric_sum(before, "basalt_input_tokens_total")
    assert inv0 >= 1, f"basalt_invocations_total is {inv0} after a successful call"

    resp = _tiny(runtime)
    deadline = time.monotonic() + 15
    while True:
        after = _metrics(raw_get)
        inv1 = _metric_sum(after, "basalt_invocations_total")
        if inv1 > inv0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert inv1 >= inv0 + 1, f"basalt_invocations_total did not grow: {inv0} -> {inv1}"
    tok1 = _metric_sum(after, "basalt_input_tokens_total")
    assert tok1 >= tok0 + resp["usage"]["inputTokens"], (
        f"basalt_input_tokens_total grew by {tok1 - tok0}, call used {resp['usage']['inputTokens']}"
    )


def test_rejected_requests_are_counted_by_dialect_and_status(raw_get, raw_post):
    def rejected():
        text = _metrics(raw_get)
        total = 0.0
        for line in text.splitlines():
            m = SAMPLE_RE.match(line)
            if m and m.group(1) == "basalt_http_responses_total" and 'dialect="bedrock"' in line and 'status="400"' in line:
                total += float(m.group(3))
        return total

    before = rejected()
    status, _, _ = raw_post(f"/model/{CHAT_MODEL.replace(':', '%3A')}/converse", b"{not json")
    assert status == 400
    assert rejected() == before + 1, "a malformed request was not counted in basalt_http_responses_total"


def test_usage_report_has_latency_percentiles_per_hour_and_recommendations(server, runtime, key):
    runtime.converse(modelId=CHAT_MODEL, messages=[user_msg("Report me.")],
                     inferenceConfig={"maxTokens": 3, "temperature": 0.0})
    deadline = time.monotonic() + 15
    while True:
        data = server.cli_json("usage", "--json", "--by", "hour")
        groups = [g for g in data["groups"] if g["key_name"] == "tests" and g["model_id"] == CHAT_MODEL
                  and g["inference_type"] == "ON_DEMAND"]
        if groups or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert groups, data["groups"]
    g = groups[-1]
    assert g["bucket_start_ms"] % 3_600_000 == 0
    assert g["p50_latency_ms"] is not None and g["p99_latency_ms"] >= g["p50_latency_ms"]
    assert isinstance(data["recommendations"], list)
    admin = server.cli_json("keys", "create", "--name", "usage-admin", "--admin", "--json")
    from basalt_support import http_request

    ok = http_request(server.port, "GET", "/basalt/v1/usage?by=day", b"",
                      {"Authorization": f"Bearer {admin['bearer_token']}"})
    assert ok.status == 200, ok.body
    body = json.loads(ok.body)
    assert any(g["model_id"] == CHAT_MODEL for g in body["groups"]) and "recommendations" in body
    denied = http_request(server.port, "GET", "/basalt/v1/usage", b"", {"Authorization": f"Bearer {key.bearer_token}"})
    assert denied.status == 403
    bad = http_request(server.port, "GET", "/basalt/v1/usage?by=week", b"",
                       {"Authorization": f"Bearer {admin['bearer_token']}"})
    assert bad.status == 400
