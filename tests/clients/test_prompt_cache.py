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
