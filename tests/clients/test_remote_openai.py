"""The OpenAI-compatible remote provider, against a real OpenAI-compatible server.

The upstream is the session's Basalt server (serving SmolLM2 on its `/v1` OpenAI API,
with bearer auth); a second Basalt ("front") has catalog entries with `engine =
"remote"` pointing at it. Everything a client does on the front — boto3 Converse,
ConverseStream, InvokeModel, the openai SDK — is translated to OpenAI Chat Completions,
sent upstream, and translated back. Greedy decoding makes the upstream deterministic,
so the front's answers must equal the upstream's own, token counts included.
"""
import json

import boto3
import jsonschema
import openai
import pytest

from basalt_support import (CHAT_MODEL, EMBED_MODEL, REGION, converse_text, cosine, expect_client_error, http_request,
                            inline_table, remote_embedding_toml, remote_model_toml, user_msg)
from conftest import BOTO_CONFIG, _free_port, start_server, stop_server, _tail
from test_metering import wait_for_row

REMOTE = "basalt.smollm2-remote-v1:0"
BAD_KEY = "basalt.smollm2-bad-key-v1:0"
DOWN = "basalt.smollm2-down-v1:0"
MISSING = "basalt.no-such-upstream-model-v1:0"
REMOTE_EMBED = "basalt.minilm-remote-v1:0"



@pytest.fixture(scope="module")
def front(server, create_key, tmp_path_factory):
    upstream_key = create_key("front-upstream").bearer_token
    closed = f"http://127.0.0.1:{_free_port()}/v1"
    up = f"{server.url}/v1"
    config = 'region = "us-east-1"\n' + "".join(
        remote_model_toml(i, "upstream = " + inline_table(
            api="openai", base_url=b, model=m, api_key_env=k, timeout_secs=120, context_window=1024,
        ), tools=True, extra=("default_max_tokens = 256",))
        for i, b, m, k in [
            (REMOTE, up, CHAT_MODEL, "BASALT_TEST_UPSTREAM_KEY"),
            (BAD_KEY, up, CHAT_MODEL, "BASALT_TEST_BAD_KEY"),
            (DOWN, closed, CHAT_MODEL, "BASALT_TEST_UPSTREAM_KEY"),
            (MISSING, up, "nobody.no-such-model-v1:0", "BASALT_TEST_UPSTREAM_KEY"),
        ]
    ) + remote_embedding_toml(REMOTE_EMBED, "upstream = " + inline_table(
        api="openai", base_url=up, model=EMBED_MODEL, api_key_env="BASALT_TEST_UPSTREAM_KEY", timeout_secs=60,
    ), 384)
    base = tmp_path_factory.mktemp("front")
    path = base / "front.toml"
    path.write_text(config)
    srv = start_server(
        path,
        base,
        {"BASALT_TEST_UPSTREAM_KEY": upstream_key, "BASALT_TEST_BAD_KEY": "bsk-not-a-real-key"},
    )
    srv.upstream_key = upstream_key
    yield srv
    crashed = stop_server(srv)
    assert crashed is None, f"the front server crashed:\n{_tail(srv.log_path)}"


@pytest.fixture(scope="module")
def front_key(front):
    data = front.cli_json("keys", "create", "--name", "remote-tests", "--json")
    return data


@pytest.fixture(scope="module")
def front_runtime(front, front_key):
    return boto3.session.Session().client(
        "bedrock-runtime",
        endpoint_url=front.url,
        region_name=REGION,
        aws_access_key_id=front_key["access_key_id"],
        aws_secret_access_key=front_key["secret_access_key"],
        config=BOTO_CONFIG,
    )


def ask(client, model, messages, max_tokens=48, **extra):
    return client.converse(
        modelId=model, messages=messages, inferenceConfig={"maxTokens": max_tokens, "temperature": 0}, **extra
    )


def test_converse_through_the_remote_equals_the_upstream(front_runtime, runtime):
    messages = [user_msg("Name three colours of the rainbow.")]
    system = [{"text": "You answer in one short sentence."}]
    direct = ask(runtime, CHAT_MODEL, messages, system=system)
    remote = ask(front_runtime, REMOTE, messages, system=system)
    assert converse_text(remote) == converse_text(direct)
    assert remote["stopReason"] == direct["stopReason"]
    assert remote["usage"]["inputTokens"] == direct["usage"]["inputTokens"]
    assert remote["usage"]["outputTokens"] == direct["usage"]["outputTokens"]


def test_multi_turn_through_the_remote_equals_the_upstream(front_runtime, runtime):
    messages = [
        user_msg("My name is Ada."),
        {"role": "assistant", "content": [{"text": "Hello Ada, nice to meet you."}]},
        user_msg("What is my name?"),
    ]
    assert converse_text(ask(front_runtime, REMOTE, messages)) == converse_text(ask(runtime, CHAT_MODEL, messages))


def test_max_tokens_and_stop_sequences_reach_the_upstream(front_runtime):
    resp = ask(front_runtime, REMOTE, [user_msg("Count from one to twenty in words.")], max_tokens=5)
    assert resp["stopReason"] == "max_tokens"
    assert resp["usage"]["outputTokens"] == 5


def test_converse_stream_through_the_remote(front_runtime):
    messages = [user_msg("Write two sentences about the sea.")]
    whole = converse_text(ask(front_runtime, REMOTE, messages))
    resp = front_runtime.converse_stream(
        modelId=REMOTE, messages=messages, inferenceConfig={"maxTokens": 48, "temperature": 0}
    )
    text, stop, usage, deltas = "", None, None, 0
    for event in resp["stream"]:
        if "contentBlockDelta" in event:
            text += event["contentBlockDelta"]["delta"].get("text", "")
            deltas += 1
        if "messageStop" in event:
            stop = event["messageStop"]["stopReason"]
        if "metadata" in event:
            usage = event["metadata"]["usage"]
    assert text == whole
    assert deltas > 1, "the upstream's stream must be relayed event by event"
    assert stop in ("end_turn", "max_tokens")
    assert usage and usage["outputTokens"] > 0 and usage["inputTokens"] > 0


WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}


def test_tool_use_round_trip_through_the_remote(front_runtime):
    tools = {
        "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather now.", "inputSchema": {"json": WEATHER}}}],
        "toolChoice": {"any": {}},
    }
    first = ask(front_runtime, REMOTE, [user_msg("What is the weather in Paris?")], max_tokens=120, toolConfig=tools)
    assert first["stopReason"] == "tool_use", first
    uses = [b["toolUse"] for b in first["output"]["message"]["content"] if "toolUse" in b]
    assert len(uses) == 1
    jsonschema.validate(uses[0]["input"], WEATHER)
    assert uses[0]["name"] == "get_weather" and uses[0]["toolUseId"]
    follow_up = [
        user_msg("What is the weather in Paris?"),
        first["output"]["message"],
        {"role": "user", "content": [{"toolResult": {"toolUseId": uses[0]["toolUseId"], "content": [{"json": {"temp": 21}}]}}]},
    ]
    tools["toolChoice"] = {"auto": {}}
    second = ask(front_runtime, REMOTE, follow_up, max_tokens=60, toolConfig=tools)
    assert second["stopReason"] in ("end_turn", "max_tokens", "tool_use"), second
    assert second["output"]["message"]["content"], second


def test_invoke_model_native_body_through_the_remote(front_runtime):
    body = json.dumps({"prompt": "Say hello.", "max_gen_len": 8, "temperature": 0})
    resp = front_runtime.invoke_model(modelId=REMOTE, body=body)
    out = json.loads(resp["body"].read())
    assert out["generation"], out
    assert out["generation_token_count"] <= 8


def test_openai_sdk_through_the_remote(front, front_key, oai):
    client = openai.OpenAI(base_url=f"{front.url}/v1", api_key=front_key["bearer_token"], max_retries=0)
    messages = [{"role": "user", "content": "Name a fruit."}]
    remote = client.chat.completions.create(model=REMOTE, messages=messages, max_tokens=16, temperature=0)
    direct = oai.chat.completions.create(model=CHAT_MODEL, messages=messages, max_tokens=16, temperature=0)
    assert remote.choices[0].message.content == direct.choices[0].message.content
    assert remote.usage.completion_tokens == direct.usage.completion_tokens
    chunks = list(
        client.chat.completions.create(
            model=REMOTE, messages=messages, max_tokens=16, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == direct.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == direct.usage.completion_tokens


@pytest.mark.parametrize(
    "model,code,status",
    [
        (BAD_KEY, "AccessDeniedException", 403),
        (DOWN, "ServiceUnavailableException", 503),
        (MISSING, "ModelErrorException", 424),
    ],
)
def test_upstream_failures_map_to_bedrock_errors(front_runtime, model, code, status):
    with pytest.raises(front_runtime.exceptions.ClientError) as info:
        ask(front_runtime, model, [user_msg("Hello")])
    err = info.value.response
    assert err["Error"]["Code"] == code, err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == status
    # Then a good request still works: nothing is stuck.
    assert converse_text(ask(front_runtime, REMOTE, [user_msg("Hello")], max_tokens=4))


def test_upstream_validation_errors_come_back_as_validation(front_runtime):
    # The upstream's context window (1024 tokens) is smaller than this prompt.
    with pytest.raises(front_runtime.exceptions.ValidationException):
        ask(front_runtime, REMOTE, [user_msg("word " * 3000)], max_tokens=8)


def test_count_tokens_is_refused_clearly_for_remote_models(front_runtime):
    with pytest.raises(front_runtime.exceptions.ValidationException) as info:
        front_runtime.count_tokens(modelId=REMOTE, input={"converse": {"messages": [user_msg("hi")]}})
    assert "not supported" in str(info.value)


def test_the_upstream_key_never_appears_in_logs_errors_or_metrics(front, front_key, front_runtime):
    with pytest.raises(front_runtime.exceptions.ClientError) as info:
        ask(front_runtime, BAD_KEY, [user_msg("Hello")])
    assert "bsk-not-a-real-key" not in str(info.value.response)
    metrics = http_request(front.port, "GET", "/metrics").body.decode()
    log = front.log_path.read_text(errors="replace")
    for secret in (front.upstream_key, "bsk-not-a-real-key"):
        assert secret not in metrics
        assert secret not in log
    assert "basalt.smollm2-remote-v1:0" in metrics, "remote invocations are missing from /metrics"


def test_remote_invocations_are_metered_with_the_upstream_counts(front, front_runtime):
    key = front.cli_json("keys", "create", "--name", "remote-metering", "--json")
    client = boto3.session.Session().client(
        "bedrock-runtime", endpoint_url=front.url, region_name=REGION,
        aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG,
    )
    resp = ask(client, REMOTE, [user_msg("Meter this remote call.")], max_tokens=6)
    row = wait_for_row(front, "remote-metering", REMOTE)
    assert row["invocations"] == 1, row
    assert row["input_tokens"] == resp["usage"]["inputTokens"], (row, resp["usage"])
    assert row["output_tokens"] == resp["usage"]["outputTokens"], (row, resp["usage"])
    assert row["cost_usd"] > 0, row


def test_remote_embeddings_equal_the_upstreams_own(front, front_key, front_runtime, oai):
    client = openai.OpenAI(base_url=f"{front.url}/v1", api_key=front_key["bearer_token"], max_retries=0)
    texts = ["The cat sat on the mat.", "Quarterly revenue grew by four percent.", "ok"]
    remote = client.embeddings.create(model=REMOTE_EMBED, input=texts)
    direct = oai.embeddings.create(model=EMBED_MODEL, input=texts)
    assert [d.index for d in remote.data] == [0, 1, 2]
    for r, d in zip(remote.data, direct.data):
        assert len(r.embedding) == 384
        assert cosine(r.embedding, d.embedding) > 0.99999
    assert remote.usage.prompt_tokens == direct.usage.prompt_tokens, "the upstream's own token count"
    one = json.loads(front_runtime.invoke_model(modelId=REMOTE_EMBED, body=json.dumps({"inputText": texts[1]}))["body"].read())
    assert len(one["embedding"]) == 384 and cosine(one["embedding"], direct.data[1].embedding) > 0.99999
    assert one["inputTextTokenCount"] == oai.embeddings.create(model=EMBED_MODEL, input=[texts[1]]).usage.prompt_tokens
    expect_client_error(lambda: front_runtime.invoke_model(modelId=REMOTE_EMBED, body=json.dumps(
        {"inputText": "x", "dimensions": 256})), "ValidationException", 400)
