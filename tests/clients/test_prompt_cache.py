"""Prompt caching as Bedrock reports it: with a `cachePoint` in the request, Converse
and ConverseStream split the prompt into `cacheReadInputTokens` (what the engine
really served from its prefix cache) and `inputTokens` (the rest); without one, usage
is as before."""

from __future__ import annotations

import uuid

from basalt_support import CHAT_MODEL, user_msg


def system_prompt() -> str:
    tag = uuid.uuid4().hex
    return (f"Session {tag}. You are a terse assistant for a geology archive. "
            "Answer in one short sentence. " * 4)


def converse(runtime, system, cache_point=True):
    blocks = [{"text": system}] + ([{"cachePoint": {"type": "default"}}] if cache_point else [])
    return runtime.converse(modelId=CHAT_MODEL, system=blocks, messages=[user_msg("What is basalt?")],
                            inferenceConfig={"maxTokens": 4, "temperature": 0})


def test_a_repeated_prefix_is_reported_as_read_from_the_cache(runtime):
    system = system_prompt()
    first, second = converse(runtime, system), converse(runtime, system)
    for r in (first, second):
        usage = r["usage"]
        assert usage["cacheWriteInputTokens"] == 0, usage
        assert usage["totalTokens"] == usage["inputTokens"] + usage["cacheReadInputTokens"] + usage["outputTokens"]
    whole = lambda u: u["inputTokens"] + u["cacheReadInputTokens"]  # noqa: E731
    assert whole(first["usage"]) == whole(second["usage"]), (first["usage"], second["usage"])
    assert second["usage"]["cacheReadInputTokens"] > first["usage"]["cacheReadInputTokens"], (
        "the second call's system prompt came from the prefix cache", first["usage"], second["usage"])
    assert second["usage"]["cacheReadInputTokens"] >= whole(second["usage"]) // 2, second["usage"]


def test_without_a_cache_point_usage_has_no_cache_fields(runtime):
    system = system_prompt()
    converse(runtime, system, cache_point=False)
    again = converse(runtime, system, cache_point=False)["usage"]
    assert "cacheReadInputTokens" not in again and "cacheWriteInputTokens" not in again, again


def test_the_stream_reports_the_cache_in_its_metadata(runtime):
    system = system_prompt()
    converse(runtime, system)
    resp = runtime.converse_stream(
        modelId=CHAT_MODEL, system=[{"text": system}, {"cachePoint": {"type": "default"}}],
        messages=[user_msg("What is basalt?")], inferenceConfig={"maxTokens": 4, "temperature": 0})
    usage = [e["metadata"]["usage"] for e in resp["stream"] if "metadata" in e]
    assert len(usage) == 1 and usage[0]["cacheReadInputTokens"] > 0, usage
    assert usage[0]["cacheWriteInputTokens"] == 0, usage


def test_anthropic_cache_control_reports_cache_reads(server, key):
    """The Anthropic dialect: with `cache_control` marks, `cache_read_input_tokens` is
    what the engine reused and `input_tokens` the rest (Anthropic's split)."""
    import anthropic

    claude = anthropic.Anthropic(base_url=server.url, api_key=key.bearer_token, max_retries=0)
    system = system_prompt()
    call = lambda: claude.messages.create(  # noqa: E731
        model=CHAT_MODEL, max_tokens=4, extra_body={"temperature": 0},
        system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "What is basalt?"}]).usage
    first, second = call(), call()
    whole = lambda u: u.input_tokens + u.cache_read_input_tokens  # noqa: E731
    assert whole(first) == whole(second), (first, second)
    assert second.cache_read_input_tokens > first.cache_read_input_tokens, (first, second)
    assert second.cache_creation_input_tokens == 0


def test_openai_responses_report_cached_tokens(oai):
    """OpenAI's dialects report the reused prefix as `cached_tokens` (part of the input)."""
    system = system_prompt()
    call = lambda: oai.responses.create(  # noqa: E731
        model=CHAT_MODEL, instructions=system, input="What is basalt?", max_output_tokens=4,
        temperature=0, store=False).usage
    first, second = call(), call()
    assert first.input_tokens == second.input_tokens
    assert second.input_tokens_details.cached_tokens > first.input_tokens_details.cached_tokens, (first, second)
    assert second.input_tokens_details.cached_tokens <= second.input_tokens
