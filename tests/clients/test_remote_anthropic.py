"""The Anthropic Messages adapter, against a wire-faithful double of Anthropic's API
(`anthropic_double.py`, which checks every request against Anthropic's documented
schema and answers in Anthropic's exact JSON, event-stream and error formats)."""
import boto3
import jsonschema
import openai
import pytest

from anthropic_double import API_KEY, AnthropicDouble
from basalt_support import PNG_1X1, image_msg, REGION, converse_text, http_request, inline_table, remote_model_toml, user_msg
from conftest import BOTO_CONFIG, _tail, start_server, stop_server
from test_metering import wait_for_row

CLAUDE = "anthropic.claude-double-v1:0"
CLAUDE_BAD_KEY = "anthropic.claude-double-bad-key-v1:0"



def claude(model_id, base, key_env):
    return remote_model_toml(
        model_id,
        "upstream = " + inline_table(api="anthropic", base_url=base, model="claude-double", api_key_env=key_env, timeout_secs=30),
        provider="Anthropic", tools=True, price=(0.003, 0.015), images=True,
        # The adapter alone: no retries, no breaker (test_routing.py covers those).
        extra=("routing = { retries = 0, failure_threshold = 1000 }",),
    )


@pytest.fixture(scope="module")
def double():
    d = AnthropicDouble()
    yield d
    d.close()


@pytest.fixture(scope="module")
def front(double, tmp_path_factory, _hermetic_client_env):
    base = tmp_path_factory.mktemp("anthropic-front")
    path = base / "front.toml"
    path.write_text('region = "us-east-1"\n'
                    + claude(CLAUDE, double.base_url, "BASALT_TEST_ANTHROPIC_KEY")
                    + claude(CLAUDE_BAD_KEY, double.base_url, "BASALT_TEST_ANTHROPIC_BAD_KEY"))
    srv = start_server(path, base, {"BASALT_TEST_ANTHROPIC_KEY": API_KEY, "BASALT_TEST_ANTHROPIC_BAD_KEY": "sk-ant-wrong"})
    yield srv
    crashed = stop_server(srv)
    assert crashed is None, f"the front server crashed:\n{_tail(srv.log_path)}"


@pytest.fixture(scope="module")
def key(front):
    return front.cli_json("keys", "create", "--name", "anthropic-tests", "--json")


@pytest.fixture(scope="module")
def rt(front, key):
    return boto3.session.Session().client(
        "bedrock-runtime", endpoint_url=front.url, region_name=REGION,
        aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG,
    )


def ask(rt, text, model=CLAUDE, max_tokens=64, **extra):
    return rt.converse(modelId=model, messages=[user_msg(text)], inferenceConfig={"maxTokens": max_tokens, "temperature": 0.2}, **extra)


def test_plain_converse_and_the_request_sent(rt, double):
    resp = ask(rt, "hello there", system=[{"text": "Be kind."}])
    assert converse_text(resp) == "You said: hello there"
    assert resp["stopReason"] == "end_turn"
    assert resp["usage"]["outputTokens"] == 4 and resp["usage"]["inputTokens"] > 0
    sent = double.requests[-1]
    assert sent["headers"]["x-api-key"] == API_KEY
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["body"]["system"] == "Be kind."
    assert sent["body"]["max_tokens"] == 64 and sent["body"]["temperature"] == pytest.approx(0.2)
    assert "stream" not in sent["body"]


def test_multi_turn_alternates_roles(rt):
    resp = rt.converse(modelId=CLAUDE, messages=[
        user_msg("first"), {"role": "assistant", "content": [{"text": "ok"}]}, user_msg("second question"),
    ])
    assert converse_text(resp) == "You said: second question"


def test_max_tokens_and_stop_sequences(rt):
    assert ask(rt, "one two three four five", max_tokens=3)["stopReason"] == "max_tokens"
    resp = rt.converse(modelId=CLAUDE, messages=[user_msg("alpha beta STOP gamma")],
                       inferenceConfig={"maxTokens": 50, "stopSequences": ["STOP"]})
    assert resp["stopReason"] == "stop_sequence"
    assert converse_text(resp) == "You said: alpha beta"


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city", "days"]}


def test_tool_use_round_trip(rt, double):
    tools = {"tools": [{"toolSpec": {"name": "forecast", "description": "Forecast.", "inputSchema": {"json": SCHEMA}}}], "toolChoice": {"any": {}}}
    first = ask(rt, "please use the tool", toolConfig=tools)
    assert first["stopReason"] == "tool_use"
    use = [b["toolUse"] for b in first["output"]["message"]["content"] if "toolUse" in b][0]
    jsonschema.validate(use["input"], SCHEMA)
    assert double.requests[-1]["body"]["tool_choice"] == {"type": "any"}
    second = rt.converse(modelId=CLAUDE, toolConfig=tools, messages=[
        user_msg("please use the tool"), first["output"]["message"],
        {"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "sunny"}]}}]},
    ])
    sent = double.requests[-1]["body"]["messages"]
    assert sent[1]["content"][0]["type"] == "tool_use" and sent[2]["content"][0]["type"] == "tool_result"
    assert converse_text(second).startswith("You said:")


def test_converse_stream_relays_events(rt):
    resp = rt.converse_stream(modelId=CLAUDE, messages=[user_msg("stream these few words")], inferenceConfig={"maxTokens": 50})
    text, deltas, stop, usage = "", 0, None, None
    for e in resp["stream"]:
        if "contentBlockDelta" in e:
            text += e["contentBlockDelta"]["delta"].get("text", "")
            deltas += 1
        stop = e.get("messageStop", {}).get("stopReason", stop)
        usage = e.get("metadata", {}).get("usage", usage)
    assert text == "You said: stream these few words"
    assert deltas == 6
    assert stop == "end_turn"
    assert usage["outputTokens"] == 6


def test_streamed_tool_use(rt):
    tools = {"tools": [{"toolSpec": {"name": "forecast", "inputSchema": {"json": SCHEMA}}}], "toolChoice": {"any": {}}}
    resp = rt.converse_stream(modelId=CLAUDE, messages=[user_msg("use the tool now")], toolConfig=tools)
    events = list(resp["stream"])
    start = [e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e]
    assert start and start[0]["name"] == "forecast"
    stop = [e["messageStop"]["stopReason"] for e in events if "messageStop" in e]
    assert stop == ["tool_use"]


def test_an_error_event_mid_stream_reaches_the_client(rt, front):
    resp = rt.converse_stream(modelId=CLAUDE, messages=[user_msg("fail midway please")])
    with pytest.raises(rt.exceptions.ClientError) as info:
        for _ in resp["stream"]:
            pass
    assert "Overloaded" in str(info.value) or "overloaded" in str(info.value)


@pytest.mark.parametrize("trigger,code,status", [
    ("raise 429", "ThrottlingException", 429),
    ("raise 529", "ServiceUnavailableException", 503),
    ("raise 500", "ModelErrorException", 424),
])
def test_upstream_errors_map_to_bedrock_errors(rt, trigger, code, status):
    with pytest.raises(rt.exceptions.ClientError) as info:
        ask(rt, trigger)
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_a_bad_key_is_access_denied_and_never_shown(rt, front):
    with pytest.raises(rt.exceptions.AccessDeniedException) as info:
        ask(rt, "hello", model=CLAUDE_BAD_KEY)
    assert "sk-ant-wrong" not in str(info.value)
    assert "sk-ant-wrong" not in front.log_path.read_text(errors="replace")
    assert API_KEY not in front.log_path.read_text(errors="replace")
    assert API_KEY not in http_request(front.port, "GET", "/metrics").body.decode()


def test_openai_sdk_on_an_anthropic_model(front, key):
    client = openai.OpenAI(base_url=f"{front.url}/v1", api_key=key["bearer_token"], max_retries=0)
    out = client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "hi from openai"}], max_tokens=20)
    assert out.choices[0].message.content == "You said: hi from openai"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "raise 429"}], max_tokens=20)


def test_structured_output_is_refused_clearly(front, key):
    client = openai.OpenAI(base_url=f"{front.url}/v1", api_key=key["bearer_token"], max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=CLAUDE, messages=[{"role": "user", "content": "x"}], max_tokens=20,
            response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}},
        )
    assert "not supported" in str(info.value)


def test_anthropic_calls_are_metered(front, rt):
    resp = ask(rt, "meter me")
    row = wait_for_row(front, "anthropic-tests", CLAUDE)
    assert row["output_tokens"] >= resp["usage"]["outputTokens"]
    assert row["cost_usd"] > 0


def test_images_reach_anthropic_as_base64_image_blocks(rt, double):
    import base64
    r = rt.converse(modelId=CLAUDE, messages=[image_msg("What is in this picture?")], inferenceConfig={"maxTokens": 40})
    assert r["stopReason"] in ("end_turn", "max_tokens")
    content = double.requests[-1]["body"]["messages"][-1]["content"]
    image = next(b for b in content if b["type"] == "image")
    assert image["source"]["type"] == "base64" and image["source"]["media_type"] == "image/png"
    assert base64.b64decode(image["source"]["data"]) == PNG_1X1
