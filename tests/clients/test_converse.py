"""bedrock-runtime Converse through boto3 (SigV4).

The chat model is tiny, so nothing here asserts on what the answer means:
only structure, token accounting, stop reasons and greedy determinism.
"""

import pytest

from basalt_support import (
    CHAT_MODEL,
    CHATML_SPECIAL,
    LEGACY_MODEL,
    LONG_PROMPT,
    SHORT_PROMPTS,
    assistant_msg,
    converse_text,
    expect_client_error,
    pick_stop_word,
    user_msg,
)

STORY_MAX = 40


def check_converse(resp: dict, max_tokens: int) -> str:
    """Structural checks every Converse response must pass; returns the text."""
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["ResponseMetadata"].get("RequestId"), "no x-amzn-RequestId on success"
    msg = resp["output"]["message"]
    assert msg["role"] == "assistant", f"output role is {msg['role']!r}"
    assert msg["content"], "assistant message has no content blocks"
    for block in msg["content"]:
        assert set(block) == {"text"}, f"unexpected content block {block!r}"
    text = converse_text(resp)
    for tok in CHATML_SPECIAL:
        assert tok not in text, f"special token {tok!r} leaked into the answer: {text!r}"

    usage = resp["usage"]
    for f in ("inputTokens", "outputTokens", "totalTokens"):
        assert isinstance(usage[f], int), f"usage.{f} is not an int: {usage!r}"
    assert usage["inputTokens"] > 0, usage
    assert usage["outputTokens"] >= 1, usage
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"], usage
    assert usage["outputTokens"] <= max_tokens, f"outputTokens exceeds maxTokens={max_tokens}"

    latency = resp["metrics"]["latencyMs"]
    assert isinstance(latency, int) and latency >= 0, f"metrics.latencyMs={latency!r}"

    reason = resp["stopReason"]
    assert reason in ("end_turn", "max_tokens", "stop_sequence"), f"stopReason={reason!r}"
    if reason == "max_tokens":
        assert usage["outputTokens"] == max_tokens, (
            f"stopReason max_tokens but outputTokens={usage['outputTokens']} != {max_tokens}"
        )
    if usage["outputTokens"] < max_tokens:
        assert reason != "max_tokens", "stopped early yet reports max_tokens"
    return text


def greedy(runtime, messages, max_tokens, **extra):
    inference = {"maxTokens": max_tokens, "temperature": 0.0}
    inference.update(extra.pop("inference", {}))
    return runtime.converse(
        modelId=extra.pop("model", CHAT_MODEL),
        messages=messages,
        inferenceConfig=inference,
        **extra,
    )


@pytest.fixture(scope="module")
def story(runtime):
    resp = greedy(runtime, [user_msg(LONG_PROMPT)], STORY_MAX)
    check_converse(resp, STORY_MAX)
    return resp


def test_basic_response_shape(runtime):
    resp = greedy(runtime, [user_msg("Hello! Who are you?")], 16)
    text = check_converse(resp, 16)
    assert text.strip(), "empty answer"


def test_greedy_is_deterministic(runtime, story):
    again = greedy(runtime, [user_msg(LONG_PROMPT)], STORY_MAX)
    check_converse(again, STORY_MAX)
    assert converse_text(again) == converse_text(story), "temperature 0 output is not deterministic"
    assert again["usage"] == story["usage"], "usage differs between identical requests"
    assert again["stopReason"] == story["stopReason"]


def test_max_tokens_stop_reason(runtime):
    resp = greedy(runtime, [user_msg(LONG_PROMPT)], 5)
    check_converse(resp, 5)
    assert resp["stopReason"] == "max_tokens", resp["stopReason"]
    assert resp["usage"]["outputTokens"] == 5, resp["usage"]


def test_long_answer_hits_limit(story):
    assert story["stopReason"] == "max_tokens", (
        f"a {STORY_MAX}-token story should hit the limit, got {story['stopReason']}"
    )


def test_end_turn_is_reported(runtime):
    max_tokens = 48
    seen = []
    for prompt in SHORT_PROMPTS:
        resp = greedy(runtime, [user_msg(prompt)], max_tokens)
        check_converse(resp, max_tokens)
        seen.append((prompt, resp["stopReason"], resp["usage"]["outputTokens"]))
        if resp["stopReason"] == "end_turn":
            assert resp["usage"]["outputTokens"] <= max_tokens
            return
    pytest.fail(f"no short prompt ended with end_turn: {seen}")


def test_system_prompt_is_used(runtime):
    q = [user_msg("What is the capital of France?")]
    short = greedy(runtime, q, 4, system=[{"text": "Be brief."}])
    long_sys = (
        "You are a meticulous assistant for a travel agency. Always answer politely, "
        "mention the country, the continent and one famous landmark, and never use slang."
    )
    long = greedy(runtime, q, 4, system=[{"text": long_sys}])
    check_converse(short, 4)
    check_converse(long, 4)
    assert long["usage"]["inputTokens"] > short["usage"]["inputTokens"] + 10, (
        "a much longer system prompt must add input tokens: "
        f"{short['usage']['inputTokens']} vs {long['usage']['inputTokens']}"
    )


def test_multi_turn(runtime):
    single = greedy(runtime, [user_msg("What is my name?")], 8)
    multi = greedy(
        runtime,
        [
            user_msg("Hello, my name is Samantha and I live in Lisbon."),
            assistant_msg("Nice to meet you, Samantha! How can I help you today?"),
            user_msg("What is my name?"),
        ],
        8,
    )
    check_converse(single, 8)
    check_converse(multi, 8)
    assert multi["usage"]["inputTokens"] > single["usage"]["inputTokens"] + 10, (
        "earlier turns must be part of the prompt: "
        f"{single['usage']['inputTokens']} vs {multi['usage']['inputTokens']}"
    )


def test_stop_sequence(runtime, story):
    original = converse_text(story)
    word, pos = pick_stop_word(original)
    resp = greedy(
        runtime,
        [user_msg(LONG_PROMPT)],
        STORY_MAX,
        inference={"stopSequences": [word]},
    )
    text = check_converse(resp, STORY_MAX)
    assert resp["stopReason"] == "stop_sequence", (
        f"stopSequences=[{word!r}] should stop the answer, stopReason={resp['stopReason']}"
    )
    assert word not in text, f"stop sequence {word!r} must not be in the output: {text!r}"
    assert original.startswith(text), (
        f"stopped answer is not a prefix of the greedy answer:\n{text!r}\nvs\n{original!r}"
    )
    assert len(text) <= pos, f"answer continues past the stop word at {pos}: {text!r}"
    assert resp["usage"]["outputTokens"] < story["usage"]["outputTokens"]


def test_unmatched_stop_sequence_changes_nothing(runtime, story):
    resp = greedy(
        runtime,
        [user_msg(LONG_PROMPT)],
        STORY_MAX,
        inference={"stopSequences": ["ZZQXJ-never-generated"]},
    )
    check_converse(resp, STORY_MAX)
    assert converse_text(resp) == converse_text(story)
    assert resp["stopReason"] == story["stopReason"]


def test_top_k_one_equals_greedy(runtime):
    messages = [user_msg("Tell me about the ocean.")]
    base = greedy(runtime, messages, 16)
    sampled = runtime.converse(
        modelId=CHAT_MODEL,
        messages=messages,
        inferenceConfig={"maxTokens": 16, "temperature": 1.0, "topP": 1.0},
        additionalModelRequestFields={"top_k": 1},
    )
    check_converse(sampled, 16)
    assert converse_text(sampled) == converse_text(base), (
        "top_k=1 sampling must pick the argmax token every step (i.e. equal greedy output)"
    )


def test_sampling_parameters_accepted(runtime):
    resp = runtime.converse(
        modelId=CHAT_MODEL,
        messages=[user_msg("Tell me about the ocean.")],
        system=[{"text": "You are a poet."}],
        inferenceConfig={"maxTokens": 12, "temperature": 0.9, "topP": 0.8},
        additionalModelRequestFields={"top_k": 20},
    )
    check_converse(resp, 12)


def test_tool_config_is_rejected_by_a_model_without_tools(runtime, converse_ok):
    """The LEGACY test entry is configured with tools = false."""
    tool = {
        "toolSpec": {
            "name": "get_weather",
            "description": "Get the weather for a city",
            "inputSchema": {
                "json": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                }
            },
        }
    }
    expect_client_error(
        lambda: runtime.converse(
            modelId=LEGACY_MODEL,
            messages=[user_msg("What's the weather in Paris?")],
            inferenceConfig={"maxTokens": 8},
            toolConfig={"tools": [tool]},
        ),
        "ValidationException",
        400,
    )
    converse_ok()


def test_legacy_model_works_with_lifecycle_header(runtime):
    resp = greedy(runtime, [user_msg("Hi")], 4, model=LEGACY_MODEL)
    check_converse(resp, 4)
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert headers.get("x-basalt-model-lifecycle") == "LEGACY", (
        f"legacy model response lacks x-basalt-model-lifecycle: LEGACY; headers={headers}"
    )


def test_active_model_is_not_flagged_legacy(runtime):
    resp = greedy(runtime, [user_msg("Hi")], 2)
    value = resp["ResponseMetadata"]["HTTPHeaders"].get("x-basalt-model-lifecycle")
    assert value in (None, "ACTIVE"), f"active model flagged as {value!r}"


def test_document_blocks_are_read_into_the_prompt(runtime, raw_post):
    """Converse `document` blocks (bytes or text sources) become text with the
    knowledge-base parsers: the model sees the document's words."""
    from kb_support import make_docx, make_pdf

    question = "What colour is the door? Answer with one word."
    docs = [
        ("txt", b"Note: the door is painted green."),
        ("md", b"# House\n\nThe door is painted green."),
        ("html", b"<html><body><p>The door is painted green.</p></body></html>"),
        ("csv", b"part,colour\ndoor,green\n"),
        ("pdf", make_pdf(["The door is painted green."])),
        ("docx", make_docx(["The door is painted green."])),
    ]
    plain = runtime.count_tokens(modelId=CHAT_MODEL, input={"converse": {"messages": [user_msg(question)]}})
    for fmt, data in docs:
        messages = [{"role": "user", "content": [
            {"document": {"format": fmt, "name": f"House notes {fmt}", "source": {"bytes": data}}},
            {"text": question},
        ]}]
        counted = runtime.count_tokens(modelId=CHAT_MODEL, input={"converse": {"messages": messages}})
        assert counted["inputTokens"] > plain["inputTokens"] + 5, (fmt, counted, plain)
        r = runtime.converse(modelId=CHAT_MODEL, messages=messages,
                             inferenceConfig={"maxTokens": 8, "temperature": 0.0})
        assert r["usage"]["inputTokens"] == counted["inputTokens"], fmt
    for fmt, expected in (("xlsx", "not supported"), ("exe", "is not one of")):
        expect_client_error(lambda: runtime.converse(modelId=CHAT_MODEL, messages=[{"role": "user", "content": [
            {"document": {"format": fmt, "name": "Sheet", "source": {"bytes": b"data"}}}, {"text": "Hi"}]}]),
            "ValidationException", 400, message_contains=expected)
    too_many = [{"document": {"format": "txt", "name": f"Doc {i}", "source": {"bytes": b"text"}}} for i in range(6)]
    expect_client_error(lambda: runtime.converse(
        modelId=CHAT_MODEL, messages=[{"role": "user", "content": too_many + [{"text": "Hi"}]}]),
        "ValidationException", 400, message_contains="at most 5")
    expect_client_error(lambda: runtime.converse(modelId=CHAT_MODEL, messages=[{"role": "user", "content": [
        {"document": {"format": "pdf", "name": "Broken", "source": {"bytes": b"%PDF-1.4 broken"}}},
        {"text": "Hi"}]}]), "ValidationException", 400, message_contains="cannot be read")
