"""Isolation: a provisioned client's latency while on-demand clients saturate the same
model, against its latency on an idle server; an on-demand probe client beside it.

usage: provisioned.py BASALT_URL BEARER_TOKEN
"""
import json
import statistics
import sys
import threading
import time
import urllib.request
import uuid

URL, TOKEN = sys.argv[1], sys.argv[2]
MODEL = "huggingfacetb.smollm2-135m-instruct-v1:0"
LOAD_CLIENTS, SAMPLES, MAX_TOKENS = 8, 40, 32


def call(method, path, body=None):
    req = urllib.request.Request(URL + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def converse(model_id, text):
    from urllib.parse import quote
    return call("POST", f"/model/{quote(model_id, safe='')}/converse", {
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"maxTokens": MAX_TOKENS, "temperature": 0}})


def latencies(model_id, n, tag):
    out = []
    for i in range(n):
        start = time.perf_counter()
        converse(model_id, f"Write a short sentence about {tag} number {i}.")
        out.append((time.perf_counter() - start) * 1000)
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


arn = call("POST", "/provisioned-model-throughput", {"modelUnits": 1, "provisionedModelName": f"bench-{uuid.uuid4().hex[:6]}",
                                                     "modelId": MODEL})["provisionedModelArn"]
idle_prov = latencies(arn, SAMPLES, "idle provisioned")
idle_od = latencies(MODEL, SAMPLES, "idle on-demand")
stop = threading.Event()


def load(k):
    i = 0
    while not stop.is_set():
        try:
            converse(MODEL, f"Tell me a long story about the sea, part {k}-{i}.")
        except Exception:
            pass
        i += 1


threads = [threading.Thread(target=load, args=(k,), daemon=True) for k in range(LOAD_CLIENTS)]
for t in threads:
    t.start()
time.sleep(3)
busy_prov, busy_od = [], []
probe = threading.Thread(target=lambda: busy_od.extend(latencies(MODEL, SAMPLES // 2, "busy on-demand")))
probe.start()
busy_prov = latencies(arn, SAMPLES, "busy provisioned")
probe.join()
stop.set()
for t in threads:
    t.join(timeout=120)
from urllib.parse import quote
call("DELETE", f"/provisioned-model-throughput/{quote(arn, safe='')}")
print(f"{LOAD_CLIENTS} on-demand clients saturating {MODEL}; each call {MAX_TOKENS} tokens max")
print(f"provisioned client, idle: p50 {pct(idle_prov, .5):7.1f} ms  p99 {pct(idle_prov, .99):7.1f} ms")
print(f"provisioned client, busy: p50 {pct(busy_prov, .5):7.1f} ms  p99 {pct(busy_prov, .99):7.1f} ms"
      f"  -> {pct(busy_prov, .5) / pct(idle_prov, .5):.2f}x / {pct(busy_prov, .99) / pct(idle_prov, .99):.2f}x idle (goal <= 1.5x)")
print(f"on-demand probe, idle:    p50 {pct(idle_od, .5):7.1f} ms  p99 {pct(idle_od, .99):7.1f} ms")
print(f"on-demand probe, busy:    p50 {pct(busy_od, .5):7.1f} ms  p99 {pct(busy_od, .99):7.1f} ms"
      f"  -> {pct(busy_od, .5) / pct(idle_od, .5):.2f}x / {pct(busy_od, .99) / pct(idle_od, .99):.2f}x idle")
