"""The CPU budget seen through /metrics (issue 22, item 2): a busy process beside the
server makes the chat engine leave it a core, and the core comes back when it stops.
Asserted on the budget's gauges, eventually (never on time or speed)."""
import os
import re
import subprocess
import sys
import time

import pytest

from basalt_support import CHAT_MODEL, user_msg


def gauges(raw_get) -> dict:
    status, _, body = raw_get("/metrics")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else body
    found = dict(re.findall(r"^(basalt_cpu_[a-z_]+)(?:\{[^}]*\})? ([0-9.]+)$", text, re.M))
    threads = re.findall(r'^basalt_engine_threads{engine="\d+"[^}]*} (\d+)$', text, re.M)
    found["engine_threads"] = max((int(t) for t in threads), default=0)
    return found


def test_the_budget_is_published(raw_get, runtime):
    runtime.converse(modelId=CHAT_MODEL, messages=[user_msg("Hi")],
                     inferenceConfig={"maxTokens": 2, "temperature": 0})
    g = gauges(raw_get)
    for name in ("basalt_cpu_cores", "basalt_cpu_adaptive", "basalt_cpu_neighbours_measured",
                 "basalt_cpu_neighbour_load", "basalt_cpu_reserved_for_neighbours",
                 "basalt_cpu_background_threads",
                 "basalt_cpu_embedding_passes_running", "basalt_cpu_embedding_passes_waiting"):
        assert name in g, f"{name} missing from /metrics"
    assert int(g["basalt_cpu_cores"]) >= 1
    assert g["basalt_cpu_adaptive"] == "1", "adapt_threads is on by default"
    assert g["engine_threads"] >= 1, "a decode step ran, so its thread count is published"


def test_a_busy_neighbour_gets_a_core_and_gives_it_back(raw_get, runtime):
    g = gauges(raw_get)
    if g.get("basalt_cpu_neighbours_measured") != "1":
        pytest.skip("this machine's CPUs are not all the server's (cpuset or quota): load is not read")
    if int(g["basalt_cpu_cores"]) < 2:
        pytest.skip("one core: nothing to leave to a neighbour")

    def decode_until(condition, what):
        deadline = time.monotonic() + 60
        while True:
            # Short requests with pauses: the client itself stays a light neighbour.
            runtime.converse(modelId=CHAT_MODEL, messages=[user_msg("Count from one to ten.")],
                             inferenceConfig={"maxTokens": 24, "temperature": 0})
            g = gauges(raw_get)
            if condition(g):
                return g
            assert time.monotonic() < deadline, f"{what}; the budget still says {g}"
            time.sleep(0.3)

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        g = decode_until(lambda g: int(g["basalt_cpu_reserved_for_neighbours"]) >= 1,
                         "a process spinning beside the server never got a core reserved")
        configured = int(g["basalt_cpu_cores"])
        assert g["engine_threads"] < configured, \
            f"the chat engine kept {g['engine_threads']} threads beside a busy neighbour"
    finally:
        busy.kill()
        busy.wait()
    decode_until(lambda g: int(g["basalt_cpu_reserved_for_neighbours"]) == 0,
                 "the core was not given back after the neighbour stopped")
