"""The local engine seen through the API: prefix reuse and cancellation, asserted on
the engine's counters in /metrics (never on time)."""
import re
import time

from basalt_support import CHAT_MODEL, user_msg


def engine_counter(raw_get, name: str) -> int:
    status, _, body = raw_get("/metrics")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else body
    values = re.findall(rf'^{name}{{engine="\d+"[^}}]*}} (\d+)$', text, re.M)
    assert values, f"{name} missing from /metrics"
    return sum(int(v) for v in values)


def test_a_shared_system_prompt_is_computed_once(runtime, raw_get):
    system = [{"text": "You are a meticulous assistant for a shipping company. " * 12}]
    def ask(question):
        return runtime.converse(modelId=CHAT_MODEL, system=system, messages=[user_msg(question)],
                                inferenceConfig={"maxTokens": 2, "temperature": 0})
    ask("Where is my parcel?")
    processed0 = engine_counter(raw_get, "basalt_engine_prompt_tokens_processed_total")
    reused0 = engine_counter(raw_get, "basalt_engine_prompt_tokens_reused_total")
    second = ask("How much does express shipping cost?")
    processed = engine_counter(raw_get, "basalt_engine_prompt_tokens_processed_total") - processed0
    reused = engine_counter(raw_get, "basalt_engine_prompt_tokens_reused_total") - reused0
    assert reused > 100, f"the shared system prompt was not reused ({reused} tokens)"
    assert processed == second["usage"]["inputTokens"] - reused, (processed, reused, second["usage"])


def test_closing_a_stream_stops_its_generation(runtime, raw_get, converse_ok):
    resp = runtime.converse_stream(
        modelId=CHAT_MODEL,
        messages=[user_msg("Write a very long story about the sea, with many chapters.")],
        inferenceConfig={"maxTokens": 1000, "temperature": 0},
    )
    events = iter(resp["stream"])
    for _ in range(3):
        next(events)
    resp["stream"].close()
    converse_ok()
    # Once the abandoned request is gone, nothing decodes while the server is idle.
    deadline = time.monotonic() + 30
    while True:
        before = engine_counter(raw_get, "basalt_engine_tokens_generated_total")
        time.sleep(0.5)
        after = engine_counter(raw_get, "basalt_engine_tokens_generated_total")
        if after == before:
            break
        assert time.monotonic() < deadline, "the engine kept generating for a closed stream"
    status, _, body = raw_get("/metrics")
    waiting = re.findall(r'^basalt_engine_requests_waiting{engine="\d+"[^}]*} (\d+)$', body.decode() if isinstance(body, bytes) else body, re.M)
    assert waiting and all(w == "0" for w in waiting), waiting
