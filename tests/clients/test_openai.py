"""OpenAI-compatible API through the official `openai` Python SDK (bearer key)."""

import json

import openai
import pytest

from basalt_support import (
    CHAT_MODEL,
    CHATML_SPECIAL,
    EMBED_DIMS,
    EMBED_MODEL,
    LONG_PROMPT,
    UNKNOWN_MODEL,
    converse_text,
    max_abs_diff,
    norm,
    user_msg,
)

FINISH_FROM_BEDROCK = {"end_turn": "stop", "max_tokens": "length", "stop_sequence": "stop"}


def chat(oai, content: str, max_tokens: int, system: str | None = None, **kw):
    messages = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": content})
    return oai.chat.completions.create(
        model=CHAT_MODEL, messages=messages, max_tokens=max_tokens, temperature=0, **kw
    )


def check_completion(resp, max_tokens: int) -> str:
    assert resp.object == "chat.completion", resp.object
    assert resp.id, "completion has no id"
    assert resp.model == CHAT_MODEL, f"model echoed as {resp.model!r}"
    assert len(resp.choices) == 1, resp.choices
    choice = resp.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    content = choice.message.content
    assert isinstance(content, str), f"content is {content!r}"
    for tok in CHATML_SPECIAL:
        assert tok not in content, f"{tok!r} leaked into content"
    assert choice.finish_reason in ("stop", "length"), choice.finish_reason
    u = resp.usage
    assert u.prompt_tokens > 0 and u.completion_tokens >= 1, u
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens, u
    assert u.completion_tokens <= max_tokens, u
    if choice.finish_reason == "length":
        assert u.completion_tokens == max_tokens, u
    if u.completion_tokens < max_tokens:
        assert choice.finish_reason == "stop", "stopped early yet finish_reason is length"
    return content


# ---------------------------------------------------------------- chat


def test_chat_completion_shape(oai):
    content = check_completion(chat(oai, "Hello! Who are you?", 16), 16)
    assert content.strip(), "empty completion"


def test_chat_completion_length(oai):
    resp = chat(oai, LONG_PROMPT, 5)
    check_completion(resp, 5)
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 5


def test_chat_completion_deterministic(oai):
    a = chat(oai, LONG_PROMPT, 24)
    b = chat(oai, LONG_PROMPT, 24)
    assert a.choices[0].message.content == b.choices[0].message.content, "temperature 0 differs"
    assert a.usage == b.usage


def test_chat_completion_matches_bedrock_converse(oai, runtime):
    system = "You are a storyteller."
    resp = chat(oai, LONG_PROMPT, 20, system=system)
    content = check_completion(resp, 20)
    br = runtime.converse(
        modelId=CHAT_MODEL,
        system=[{"text": system}],
        messages=[user_msg(LONG_PROMPT)],
        inferenceConfig={"maxTokens": 20, "temperature": 0.0},
    )
    assert content == converse_text(br), (
        "same model, same prompt, greedy: OpenAI and Converse must agree\n"
        f"openai:   {content!r}\nconverse: {converse_text(br)!r}"
    )
    assert resp.usage.prompt_tokens == br["usage"]["inputTokens"]
    assert resp.usage.completion_tokens == br["usage"]["outputTokens"]
    assert resp.choices[0].finish_reason == FINISH_FROM_BEDROCK[br["stopReason"]]


def test_chat_completion_stream(oai):
    plain = chat(oai, LONG_PROMPT, 24)
    check_completion(plain, 24)
    stream = chat(oai, LONG_PROMPT, 24, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks, "empty stream"
    for c in chunks:
        assert c.object == "chat.completion.chunk", c.object
    text = ""
    finish = []
    content_chunks = 0
    for c in chunks[:-1]:
        assert c.usage is None, "usage must only be on the final chunk"
        for ch in c.choices:
            assert ch.index == 0
            if ch.delta.content:
                text += ch.delta.content
                content_chunks += 1
            if ch.finish_reason is not None:
                finish.append(ch.finish_reason)
    last = chunks[-1]
    assert last.usage is not None, "include_usage: final chunk has no usage"
    assert last.choices == [], "the usage chunk must have empty choices"
    assert text == plain.choices[0].message.content, (
        f"streamed content differs:\nstream: {text!r}\nplain:  {plain.choices[0].message.content!r}"
    )
    assert finish == [plain.choices[0].finish_reason], f"finish_reason chunks: {finish}"
    assert last.usage.prompt_tokens == plain.usage.prompt_tokens
    assert last.usage.completion_tokens == plain.usage.completion_tokens
    assert last.usage.total_tokens == plain.usage.total_tokens
    assert content_chunks >= 2, "24 tokens in a single chunk: not streamed"


def test_chat_completion_stream_without_usage(oai):
    chunks = list(chat(oai, "Hi", 4, stream=True))
    assert chunks
    assert all(c.usage is None for c in chunks), "usage sent although include_usage not set"


# ---------------------------------------------------------------- embeddings

TEXTS = [
    "A cat is sitting on the mat.",
    "The central bank raised interest rates.",
    "Lisbon is the capital of Portugal.",
]


def check_embeddings(resp, n: int):
    assert resp.object == "list", resp.object
    assert len(resp.data) == n, f"expected {n} embeddings, got {len(resp.data)}"
    for i, d in enumerate(resp.data):
        assert d.index == i, f"data[{i}].index == {d.index}: not ordered by index"
        assert d.object == "embedding"
        assert len(d.embedding) == EMBED_DIMS, f"data[{i}] has {len(d.embedding)} dims"
        assert abs(norm(d.embedding) - 1.0) < 1e-3, f"data[{i}] not normalized"
    assert resp.usage.prompt_tokens > 0, resp.usage
    return [d.embedding for d in resp.data]


def test_embeddings_batch_default_encoding(oai):
    # The SDK asks for base64 by default and decodes it: the common user path.
    vecs = check_embeddings(oai.embeddings.create(model=EMBED_MODEL, input=TEXTS), 3)
    singles = [
        check_embeddings(oai.embeddings.create(model=EMBED_MODEL, input=t), 1)[0] for t in TEXTS
    ]
    for i in range(3):
        assert max_abs_diff(vecs[i], singles[i]) < 1e-4, f"batch item {i} != its single embedding"
    assert max_abs_diff(vecs[0], vecs[1]) > 1e-2, "different texts gave the same vector"


def test_embeddings_float_encoding_matches_base64(oai):
    b64 = check_embeddings(oai.embeddings.create(model=EMBED_MODEL, input=TEXTS), 3)
    flt = check_embeddings(
        oai.embeddings.create(model=EMBED_MODEL, input=TEXTS, encoding_format="float"), 3
    )
    for i in range(3):
        assert max_abs_diff(b64[i], flt[i]) < 1e-6, f"float vs base64 differ for item {i}"


def test_embeddings_match_bedrock_invoke(oai, runtime):
    text = TEXTS[2]
    o = check_embeddings(oai.embeddings.create(model=EMBED_MODEL, input=text), 1)[0]
    br = json.loads(
        runtime.invoke_model(
            modelId=EMBED_MODEL,
            body=json.dumps({"inputText": text, "dimensions": EMBED_DIMS, "normalize": True}),
            contentType="application/json",
            accept="application/json",
        )["body"].read()
    )["embedding"]
    assert max_abs_diff(o, br) < 1e-4, "OpenAI and InvokeModel embeddings differ for one text"


# ---------------------------------------------------------------- models


def test_models_list(oai):
    ids = [m.id for m in oai.models.list()]
    for mid in (CHAT_MODEL, EMBED_MODEL):
        assert mid in ids, f"{mid} missing from /v1/models: {ids}"
    assert len(ids) == len(set(ids)), f"duplicate ids in /v1/models: {ids}"


# ---------------------------------------------------------------- errors


def _check_error_body(e: openai.APIStatusError):
    assert isinstance(e.body, dict) and e.body.get("message"), (
        f"OpenAI error body must be {{'error': {{'message': ...}}}}, got {e.body!r}"
    )


def test_unknown_model_is_404(oai):
    with pytest.raises(openai.NotFoundError) as ei:
        oai.chat.completions.create(
            model=UNKNOWN_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
    _check_error_body(ei.value)
    check_completion(chat(oai, "Hi", 2), 2)


def test_bad_key_is_401(make_openai, oai):
    bad = make_openai("not-a-real-key-" + "x" * 20)
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
    _check_error_body(ei.value)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    check_completion(chat(oai, "Hi", 2), 2)


def test_empty_messages_is_400(oai):
    with pytest.raises(openai.BadRequestError) as ei:
        oai.chat.completions.create(model=CHAT_MODEL, messages=[], max_tokens=2)
    _check_error_body(ei.value)
    check_completion(chat(oai, "Hi", 2), 2)


@pytest.mark.parametrize("tokens", [[9906, 1917], [[9906, 1917], [15339]]], ids=["ids", "lists"])
def test_embeddings_of_token_ids_say_they_are_not_supported(oai, tokens):
    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model=EMBED_MODEL, input=tokens)
    assert "token IDs is not supported" in str(e.value), e.value
    assert e.value.body.get("param") == "input", e.value.body


def test_embeddings_of_neither_text_nor_tokens_are_refused_plainly(raw_post):
    r = raw_post("/v1/embeddings", json.dumps({"model": EMBED_MODEL, "input": [{"a": 1}]}).encode())
    assert r.status == 400
    assert r.json()["error"]["message"] == "input must be a string or an array of strings"


def test_cached_prompt_tokens_are_the_engines_real_prefix_reuse(oai):
    system = "You are a careful assistant for a geology museum. " * 8
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Name a rock."}]
    first = oai.chat.completions.create(model=CHAT_MODEL, messages=messages, max_tokens=2, temperature=0)
    second = oai.chat.completions.create(model=CHAT_MODEL, messages=messages, max_tokens=2, temperature=0)
    cached = second.usage.prompt_tokens_details.cached_tokens
    # The whole prompt but its last token (recomputed to start the answer) was reused.
    assert cached == second.usage.prompt_tokens - 1, second.usage
    assert first.usage.prompt_tokens_details.cached_tokens < cached
