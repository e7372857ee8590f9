"""Anthropic's Messages API through the `anthropic` Python SDK (pinned): text, system,
multi-turn, stop sequences, tools (forced and auto) with tool results, streaming with
Anthropic's event sequence, count_tokens, the models list, and Anthropic's errors."""

from __future__ import annotations

import json

import anthropic
import pytest

from basalt_support import CHAT_MODEL, http_request

WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def claude(server, key):
    return anthropic.Anthropic(base_url=server.url, api_key=key.bearer_token, max_retries=0, timeout=300)


def test_text_answer_with_system_and_usage(claude):
    r = claude.messages.create(
        model=CHAT_MODEL, max_tokens=12, extra_body={"temperature": 0}, system="You are terse.",
        messages=[{"role": "user", "content": "Name a color."}])
    assert r.type == "message" and r.role == "assistant" and r.model == CHAT_MODEL
    assert r.id.startswith("msg_")
    assert len(r.content) == 1 and r.content[0].type == "text" and r.content[0].text.strip()
    assert r.stop_reason in ("end_turn", "max_tokens")
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 12
    assert r.usage.cache_read_input_tokens == 0, "without cache_control marks the prompt is all input_tokens"


def test_system_as_blocks_and_multi_turn(claude):
    r = claude.messages.create(
        model=CHAT_MODEL, max_tokens=8, extra_body={"temperature": 0},
        system=[{"type": "text", "text": "Answer with one word."}],
        messages=[
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "What is the opposite of hot?"}]},
        ])
    assert r.content[0].text.strip()


def test_system_message_inside_the_conversation(claude):
    """Newer clients (Claude Code) send `system` messages among the turns: their text
    joins the system prompt."""
    r = claude.messages.create(
        model=CHAT_MODEL, max_tokens=8, extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "Hello"},
                  {"role": "system", "content": [{"type": "text", "text": "Answer in one word."}]},
                  {"role": "user", "content": "Name a fruit."}])
    assert r.content[0].text.strip()


def test_max_tokens_and_stop_sequences(claude):
    r = claude.messages.create(model=CHAT_MODEL, max_tokens=3, extra_body={"temperature": 0},
                               messages=[{"role": "user", "content": "Write a long story about a knight."}])
    assert r.stop_reason == "max_tokens" and r.usage.output_tokens == 3
    full = claude.messages.create(model=CHAT_MODEL, max_tokens=40, extra_body={"temperature": 0},
                                  messages=[{"role": "user", "content": "Count from 1 to 10 with commas."}])
    text = full.content[0].text
    if "5" in text:
        cut = claude.messages.create(model=CHAT_MODEL, max_tokens=40, extra_body={"temperature": 0}, stop_sequences=["5"],
                                     messages=[{"role": "user", "content": "Count from 1 to 10 with commas."}])
        assert cut.stop_reason == "stop_sequence", cut
        assert "5" not in cut.content[0].text and text.startswith(cut.content[0].text.rstrip())


def test_forced_tool_use_then_tool_result(claude):
    r = claude.messages.create(
        model=CHAT_MODEL, max_tokens=100, extra_body={"temperature": 0}, tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "What's the weather in Oslo?"}])
    assert r.stop_reason == "tool_use"
    uses = [b for b in r.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather" and isinstance(uses[0].input.get("city"), str)
    follow = claude.messages.create(
        model=CHAT_MODEL, max_tokens=30, extra_body={"temperature": 0}, tools=[WEATHER],
        messages=[
            {"role": "user", "content": "What's the weather in Oslo?"},
            {"role": "assistant", "content": [u.model_dump(exclude_none=True) for u in uses]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                          "content": [{"type": "text", "text": "Sunny, 21 C"}]}]},
        ])
    assert follow.content and follow.stop_reason in ("end_turn", "max_tokens", "tool_use")


def test_structured_output(claude):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = claude.messages.create(
        model=CHAT_MODEL, max_tokens=60, extra_body={"temperature": 0},
        output_config={"format": {"type": "json_schema", "schema": schema}},
        messages=[{"role": "user", "content": "Invent a person."}])
    data = json.loads(r.content[0].text)
    assert isinstance(data["name"], str) and isinstance(data["age"], int), data


def test_streaming_text(claude):
    pieces = []
    with claude.messages.stream(model=CHAT_MODEL, max_tokens=16, extra_body={"temperature": 0},
                                messages=[{"role": "user", "content": "Count to five."}]) as s:
        for text in s.text_stream:
            pieces.append(text)
        final = s.get_final_message()
    assert len(pieces) > 1, "text must arrive in several deltas"
    assert "".join(pieces) == final.content[0].text
    assert final.usage.output_tokens == 16 or final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0, "message_delta carries the real input token count"


def test_streaming_tool_use(claude):
    with claude.messages.stream(model=CHAT_MODEL, max_tokens=100, extra_body={"temperature": 0}, tools=[WEATHER],
                                tool_choice={"type": "any"},
                                messages=[{"role": "user", "content": "Weather in Rome?"}]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    use = [b for b in final.content if b.type == "tool_use"][0]
    assert use.name == "get_weather" and isinstance(use.input, dict) and "city" in use.input


def test_stream_event_sequence_over_raw_http(server, key):
    body = json.dumps({"model": CHAT_MODEL, "max_tokens": 6, "stream": True,
                       "messages": [{"role": "user", "content": "Hi"}]}).encode()
    r = http_request(server.port, "POST", "/v1/messages", body,
                     {"x-api-key": key.bearer_token, "anthropic-version": "2023-06-01",
                      "content-type": "application/json"})
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line[len("event: "):] for line in r.body.decode().splitlines() if line.startswith("event: ")]
    assert events[:3] == ["message_start", "ping", "content_block_start"], events
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"], events
    assert set(events[3:-3]) == {"content_block_delta"}, events


def test_count_tokens_and_models(claude):
    short = claude.messages.count_tokens(model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}])
    long = claude.messages.count_tokens(model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi " * 50}])
    assert 0 < short.input_tokens < long.input_tokens
    ids = [m.id for m in claude.models.list()]
    assert CHAT_MODEL in ids


def test_models_list_takes_the_x_api_key_header(server, key):
    headers = {"x-api-key": key.bearer_token, "anthropic-version": "2023-06-01"}
    r = http_request(server.port, "GET", "/v1/models", b"", headers)
    assert r.status == 200, r.body
    body = json.loads(r.body)
    assert body["data"] and all(m["type"] == "model" for m in body["data"]), body
    one = http_request(server.port, "GET", f"/v1/models/{CHAT_MODEL}", b"", headers)
    assert one.status == 200 and json.loads(one.body)["id"] == CHAT_MODEL


def test_errors_in_anthropic_shape(claude, server):
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model=CHAT_MODEL, max_tokens=5, messages=[{"role": "tool", "content": "x"}])
    assert e.value.body["error"]["type"] == "invalid_request_error" and "messages.0.role" in e.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model=CHAT_MODEL, max_tokens=5, tools=[{"type": "web_search_20250305", "name": "web_search"}],
                               messages=[{"role": "user", "content": "x"}])
    assert "server tool" in e.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.messages.create(model="no.such-model-v1:0", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "not_found_error"
    bad = anthropic.Anthropic(base_url=server.url, api_key="bsk-not-a-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model=CHAT_MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "authentication_error"
    r = http_request(server.port, "POST", "/v1/messages", b"{not json",
                     {"x-api-key": "whatever", "content-type": "application/json"})
    assert r.status == 401 and json.loads(r.body)["type"] == "error"


def test_missing_max_tokens_is_refused(server, key):
    r = http_request(server.port, "POST", "/v1/messages",
                     json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x"}]}).encode(),
                     {"x-api-key": key.bearer_token, "content-type": "application/json"})
    assert r.status == 400
    err = json.loads(r.body)
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error" and "max_tokens" in err["error"]["message"]
