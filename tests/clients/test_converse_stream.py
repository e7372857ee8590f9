"""bedrock-runtime ConverseStream through boto3: event order and equality with Converse."""

from basalt_support import (
    CHAT_MODEL,
    CHATML_SPECIAL,
    LEGACY_MODEL,
    LONG_PROMPT,
    UNKNOWN_MODEL,
    assistant_msg,
    converse_text,
    expect_client_error,
    pick_stop_word,
    user_msg,
)

KNOWN_EVENTS = {
    "messageStart",
    "contentBlockStart",
    "contentBlockDelta",
    "contentBlockStop",
    "messageStop",
    "metadata",
}


def collect(resp: dict) -> dict:
    """Drain a ConverseStream response and check the event grammar.

    Returns {"text", "stopReason", "usage", "metrics", "deltas", "events"}.
    """
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    events = []
    for ev in resp["stream"]:
        assert len(ev) == 1, f"event with several members: {ev!r}"
        (name, payload), = ev.items()
        assert name in KNOWN_EVENTS, f"unexpected stream event {name!r}: {payload!r}"
        events.append((name, payload))
    names = [n for n, _ in events]
    assert names, "empty event stream"
    assert names[0] == "messageStart", f"first event is {names[0]}, expected messageStart"
    assert events[0][1]["role"] == "assistant", events[0][1]
    assert names[-1] == "metadata", f"last event is {names[-1]}, expected metadata"
    assert names.count("messageStart") == 1, names
    assert names.count("messageStop") == 1, names
    assert names.count("metadata") == 1, names
    assert names.index("messageStop") == len(names) - 2, (
        f"messageStop must come right before metadata: {names}"
    )
    assert "contentBlockStart" not in names, "text blocks start with a delta, not contentBlockStart"

    delta_idx = [i for i, n in enumerate(names) if n == "contentBlockDelta"]
    stop_idx = [i for i, n in enumerate(names) if n == "contentBlockStop"]
    assert delta_idx, f"no contentBlockDelta events: {names}"
    assert len(stop_idx) == 1, f"expected one contentBlockStop: {names}"
    assert stop_idx[0] > delta_idx[-1], "contentBlockStop before the last delta"
    assert stop_idx[0] < names.index("messageStop"), "contentBlockStop after messageStop"
    assert events[stop_idx[0]][1]["contentBlockIndex"] == 0

    pieces = []
    for i in delta_idx:
        payload = events[i][1]
        assert payload["contentBlockIndex"] == 0, payload
        assert set(payload["delta"]) == {"text"}, f"non-text delta {payload!r}"
        pieces.append(payload["delta"]["text"])
    text = "".join(pieces)
    for tok in CHATML_SPECIAL:
        assert tok not in text, f"special token {tok!r} leaked into the stream: {text!r}"

    meta = events[-1][1]
    usage = meta["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"], usage
    latency = meta["metrics"]["latencyMs"]
    assert isinstance(latency, int) and latency >= 0, meta["metrics"]
    stop_reason = events[names.index("messageStop")][1]["stopReason"]
    return {
        "text": text,
        "stopReason": stop_reason,
        "usage": usage,
        "metrics": meta["metrics"],
        "deltas": pieces,
        "events": events,
    }


def request(messages, max_tokens, system=None, stop=None):
    req = {
        "modelId": CHAT_MODEL,
        "messages": messages,
        "inferenceConfig": {"maxTokens": max_tokens, "temperature": 0.0},
    }
    if system:
        req["system"] = [{"text": system}]
    if stop:
        req["inferenceConfig"]["stopSequences"] = stop
    return req


def assert_same(streamed: dict, plain: dict):
    assert streamed["text"] == converse_text(plain), (
        "streamed text differs from Converse:\n"
        f"stream:   {streamed['text']!r}\nconverse: {converse_text(plain)!r}"
    )
    assert streamed["stopReason"] == plain["stopReason"]
    for f in ("inputTokens", "outputTokens", "totalTokens"):
        assert streamed["usage"][f] == plain["usage"][f], (
            f"usage.{f}: stream {streamed['usage'][f]} vs converse {plain['usage'][f]}"
        )


def test_stream_equals_converse(runtime):
    req = request([user_msg(LONG_PROMPT)], 24, system="You are a storyteller.")
    plain = runtime.converse(**req)
    streamed = collect(runtime.converse_stream(**req))
    assert_same(streamed, plain)
    assert len(streamed["deltas"]) >= 2, (
        f"{streamed['usage']['outputTokens']} tokens arrived in a single delta: not streamed"
    )


def test_stream_multi_turn_equals_converse(runtime):
    req = request(
        [
            user_msg("My favourite colour is green."),
            assistant_msg("Green is a lovely colour!"),
            user_msg("What is my favourite colour?"),
        ],
        16,
    )
    assert_same(collect(runtime.converse_stream(**req)), runtime.converse(**req))


def test_stream_max_tokens(runtime):
    streamed = collect(runtime.converse_stream(**request([user_msg(LONG_PROMPT)], 5)))
    assert streamed["stopReason"] == "max_tokens", streamed["stopReason"]
    assert streamed["usage"]["outputTokens"] == 5, streamed["usage"]


def test_stream_natural_end_matches_converse(runtime):
    req = request([user_msg("What is the capital of France?")], 48)
    assert_same(collect(runtime.converse_stream(**req)), runtime.converse(**req))


def test_stream_stop_sequence_matches_converse(runtime):
    base = runtime.converse(**request([user_msg(LONG_PROMPT)], 32))
    word, _ = pick_stop_word(converse_text(base))
    req = request([user_msg(LONG_PROMPT)], 32, stop=[word])
    plain = runtime.converse(**req)
    streamed = collect(runtime.converse_stream(**req))
    assert plain["stopReason"] == "stop_sequence", plain["stopReason"]
    assert word not in streamed["text"], (
        f"stop sequence {word!r} leaked into streamed text {streamed['text']!r}"
    )
    assert_same(streamed, plain)


def test_stream_tool_config_rejected_by_a_model_without_tools(runtime, converse_ok):
    req = request([user_msg("Weather in Paris?")], 8)
    req["modelId"] = LEGACY_MODEL
    req["toolConfig"] = {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {"json": {"type": "object", "properties": {}}},
                }
            }
        ]
    }
    expect_client_error(lambda: runtime.converse_stream(**req), "ValidationException", 400)
    converse_ok()


def test_stream_unknown_model(runtime, converse_ok):
    req = request([user_msg("Hi")], 4)
    req["modelId"] = UNKNOWN_MODEL
    expect_client_error(
        lambda: runtime.converse_stream(**req), "ResourceNotFoundException", 404
    )
    converse_ok()
