"""bedrock-runtime InvokeModel / InvokeModelWithResponseStream through boto3.

Chat bodies follow the Meta Llama shape (raw prompt, the caller applies the
chat template); embedding bodies follow the Titan embeddings shape.
"""

import json

import pytest

from basalt_support import (
    CHAT_MODEL,
    CHATML_SPECIAL,
    EMBED_DIMS,
    EMBED_MODEL,
    LONG_PROMPT,
    SHORT_PROMPTS,
    chatml,
    cosine,
    expect_client_error,
    max_abs_diff,
    norm,
)


# ---------------------------------------------------------------- chat helpers


def chat_body(prompt: str, max_gen_len: int, temperature: float = 0.0, top_p=None) -> bytes:
    body = {"prompt": prompt, "max_gen_len": max_gen_len, "temperature": temperature}
    if top_p is not None:
        body["top_p"] = top_p
    return json.dumps(body).encode()


def invoke_chat(runtime, prompt, max_gen_len, **kw) -> dict:
    resp = runtime.invoke_model(
        modelId=CHAT_MODEL,
        body=chat_body(prompt, max_gen_len, **kw),
        contentType="application/json",
        accept="application/json",
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["contentType"].startswith("application/json"), resp["contentType"]
    out = json.loads(resp["body"].read())
    check_chat_output(out, max_gen_len)
    return out


def check_chat_output(out: dict, max_gen_len: int):
    for f in ("generation", "prompt_token_count", "generation_token_count", "stop_reason"):
        assert f in out, f"InvokeModel chat output lacks {f!r}: {out!r}"
    assert isinstance(out["generation"], str)
    assert isinstance(out["prompt_token_count"], int) and out["prompt_token_count"] > 0, out
    n = out["generation_token_count"]
    assert isinstance(n, int) and 1 <= n <= max_gen_len, f"generation_token_count={n!r}"
    assert out["stop_reason"] in ("stop", "length"), f"stop_reason={out['stop_reason']!r}"
    if out["stop_reason"] == "length":
        assert n == max_gen_len, f"stop_reason length but {n} != max_gen_len {max_gen_len}"
    if n < max_gen_len:
        assert out["stop_reason"] == "stop", "stopped early yet reports length"
    for tok in CHATML_SPECIAL:
        assert tok not in out["generation"], f"{tok!r} leaked into generation"


def stream_chat(runtime, prompt, max_gen_len, **kw) -> list:
    resp = runtime.invoke_model_with_response_stream(
        modelId=CHAT_MODEL,
        body=chat_body(prompt, max_gen_len, **kw),
        contentType="application/json",
        accept="application/json",
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["contentType"], "no X-Amzn-Bedrock-Content-Type header"
    chunks = []
    for ev in resp["body"]:
        assert set(ev) == {"chunk"}, f"unexpected stream event {ev!r}"
        chunks.append(json.loads(ev["chunk"]["bytes"]))
    assert chunks, "empty response stream"
    return chunks


STORY = chatml(LONG_PROMPT)
FRANCE = chatml("What is the capital of France?")


# ---------------------------------------------------------------- chat


def test_invoke_chat_shape(runtime):
    out = invoke_chat(runtime, FRANCE, 16)
    assert out["generation"].strip(), "empty generation"


def test_invoke_chat_length_limit(runtime):
    out = invoke_chat(runtime, STORY, 5)
    assert out["stop_reason"] == "length", out
    assert out["generation_token_count"] == 5, out


def test_invoke_chat_deterministic(runtime):
    a = invoke_chat(runtime, STORY, 24)
    b = invoke_chat(runtime, STORY, 24)
    assert a == b, f"temperature 0 InvokeModel is not deterministic:\n{a}\n{b}"


def test_invoke_chat_natural_stop(runtime):
    seen = []
    for q in SHORT_PROMPTS:
        out = invoke_chat(runtime, chatml(q), 48)
        seen.append((q, out["stop_reason"], out["generation_token_count"]))
        if out["stop_reason"] == "stop":
            return
    pytest.fail(f"no short prompt ended with stop_reason 'stop': {seen}")


def test_invoke_chat_prompt_tokens_grow_with_prompt(runtime):
    short = invoke_chat(runtime, chatml("Hi"), 2)
    long = invoke_chat(runtime, chatml("Hi. " + "Please tell me a lot about mountains. " * 5), 2)
    assert long["prompt_token_count"] > short["prompt_token_count"] + 20, (short, long)


def test_invoke_chat_sampling_params(runtime):
    invoke_chat(runtime, STORY, 12, temperature=0.8, top_p=0.9)


def test_invoke_stream_equals_invoke(runtime):
    plain = invoke_chat(runtime, STORY, 24)
    chunks = stream_chat(runtime, STORY, 24)

    text = ""
    for i, c in enumerate(chunks):
        assert isinstance(c.get("generation"), str), f"chunk {i} has no generation: {c!r}"
        assert isinstance(c.get("generation_token_count"), int), f"chunk {i}: {c!r}"
        text += c["generation"]
        if i == 0:
            assert c.get("prompt_token_count") == plain["prompt_token_count"], (
                f"first chunk prompt_token_count {c.get('prompt_token_count')} "
                f"!= {plain['prompt_token_count']}"
            )
        else:
            assert c.get("prompt_token_count") is None, f"chunk {i} repeats prompt_token_count"
        if i < len(chunks) - 1:
            assert c.get("stop_reason") is None, f"chunk {i} has stop_reason before the end"
            assert "amazon-bedrock-invocationMetrics" not in c, f"chunk {i} has metrics early"

    assert len(chunks) >= 2, "24 tokens arrived in one chunk: not streamed"
    assert text == plain["generation"], (
        f"streamed generation differs:\nstream: {text!r}\nplain:  {plain['generation']!r}"
    )
    last = chunks[-1]
    assert last.get("stop_reason") == plain["stop_reason"], last
    metrics = last.get("amazon-bedrock-invocationMetrics")
    assert isinstance(metrics, dict), f"last chunk lacks amazon-bedrock-invocationMetrics: {last!r}"
    assert metrics.get("inputTokenCount") == plain["prompt_token_count"], metrics
    assert metrics.get("outputTokenCount") == plain["generation_token_count"], metrics
    for f in ("invocationLatency", "firstByteLatency"):
        assert isinstance(metrics.get(f), int) and metrics[f] >= 0, f"{f}: {metrics!r}"


def test_invoke_stream_length_limit(runtime):
    chunks = stream_chat(runtime, STORY, 5)
    last = chunks[-1]
    assert last.get("stop_reason") == "length", last
    assert last["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 5, last


def test_invoke_stream_natural_stop_matches_invoke(runtime):
    plain = invoke_chat(runtime, FRANCE, 48)
    chunks = stream_chat(runtime, FRANCE, 48)
    assert "".join(c["generation"] for c in chunks) == plain["generation"]
    assert chunks[-1]["stop_reason"] == plain["stop_reason"]


# ---------------------------------------------------------------- embeddings


def embed(runtime, text: str, dimensions: int = EMBED_DIMS) -> dict:
    resp = runtime.invoke_model(
        modelId=EMBED_MODEL,
        body=json.dumps({"inputText": text, "dimensions": dimensions, "normalize": True}),
        contentType="application/json",
        accept="application/json",
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["contentType"].startswith("application/json"), resp["contentType"]
    return json.loads(resp["body"].read())


def test_embedding_shape_and_norm(runtime):
    out = embed(runtime, "The quick brown fox jumps over the lazy dog.")
    vec = out["embedding"]
    assert isinstance(vec, list) and len(vec) == EMBED_DIMS, f"embedding has {len(vec)} dims"
    assert all(isinstance(x, float) for x in vec), "embedding values must be floats"
    assert abs(norm(vec) - 1.0) < 1e-3, f"normalize=true but |v| = {norm(vec)}"
    n = out["inputTextTokenCount"]
    assert isinstance(n, int) and n > 0, f"inputTextTokenCount={n!r}"


def test_embedding_deterministic(runtime):
    a = embed(runtime, "Deterministic embeddings please.")["embedding"]
    b = embed(runtime, "Deterministic embeddings please.")["embedding"]
    assert max_abs_diff(a, b) < 1e-6, "same text embedded twice gives different vectors"


def test_embedding_token_count_grows(runtime):
    short = embed(runtime, "cat")["inputTextTokenCount"]
    long = embed(runtime, "the cat sat on the mat while the dog slept by the fire")["inputTextTokenCount"]
    assert long > short, (short, long)


def test_embedding_similarity(runtime):
    a = embed(runtime, "A cat is sitting on the mat.")["embedding"]
    b = embed(runtime, "A kitten sits on a rug.")["embedding"]
    c = embed(runtime, "The central bank raised interest rates today.")["embedding"]
    assert cosine(a, b) > cosine(a, c) + 0.1, (
        f"similar sentences should be closer: cos(a,b)={cosine(a, b):.3f} "
        f"cos(a,c)={cosine(a, c):.3f}"
    )


def test_embedding_wrong_dimensions(runtime, converse_ok):
    expect_client_error(lambda: embed(runtime, "hello", dimensions=512), "ValidationException", 400)
    converse_ok()


def test_embedding_stream_rejected(runtime, converse_ok):
    expect_client_error(
        lambda: runtime.invoke_model_with_response_stream(
            modelId=EMBED_MODEL,
            body=json.dumps({"inputText": "hello", "dimensions": EMBED_DIMS, "normalize": True}),
            contentType="application/json",
            accept="application/json",
        ),
        "ValidationException",
        400,
    )
    converse_ok()
