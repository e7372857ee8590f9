"""Serving load for the local engine: the same OpenAI chat requests against Basalt and
llama-server, alternating, on the same model, threads and context.

Usage: python serving.py NAME=URL[,TOKEN] [NAME=URL[,TOKEN] ...]
Environment: CLIENTS (default "1,4,16"), REQUESTS_PER_CLIENT (default 3), ROUNDS (2).

Throughput: N clients each send REQUESTS_PER_CLIENT sequential non-streaming requests
(max_tokens 128, temperature 0, 8 distinct prompts sharing a system prompt);
aggregate = completion tokens / wall time. TTFT: one streaming request at a time,
median time to the first content delta, with a fresh system prompt each time ("cold")
or the same one every time ("shared").
"""
import json
import os
import statistics
import sys
import threading
import time
import urllib.request

SYSTEM = "You are a helpful assistant. Answer in detail and at length."
PROMPTS = [
    "Describe how a steam engine works.", "Tell me the history of Rome.", "Explain photosynthesis.",
    "Write a story about a lighthouse.", "How do airplanes fly?", "Describe the water cycle.",
    "Explain how computers store data.", "Write a poem about autumn and explain it.",
]


def post(url, token, body, stream=False):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(), headers=headers)
    return urllib.request.urlopen(req, timeout=600)


def body(model, prompt, system, stream=False, max_tokens=128):
    return {"model": model, "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "temperature": 0, "stream": stream}


def throughput(url, token, model, clients, per_client):
    tokens = [0] * clients
    def worker(i):
        for k in range(per_client):
            out = json.load(post(url, token, body(model, PROMPTS[(i + k) % len(PROMPTS)], SYSTEM)))
            tokens[i] += out["usage"]["completion_tokens"]
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(tokens) / (time.perf_counter() - start)


def ttft(url, token, model, shared, n=6):
    times = []
    for i in range(n):
        system = SYSTEM if shared else f"{SYSTEM} Session {time.time_ns()}-{i}."
        start = time.perf_counter()
        with post(url, token, body(model, PROMPTS[i % len(PROMPTS)], system, stream=True, max_tokens=8), stream=True) as resp:
            for line in resp:
                line = line.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                delta = json.loads(line[6:])["choices"]
                if delta and delta[0].get("delta", {}).get("content"):
                    times.append((time.perf_counter() - start) * 1000)
                    break
            for _ in resp:
                pass
    return statistics.median(times)


def main():
    targets = []
    for arg in sys.argv[1:]:
        name, rest = arg.split("=", 1)
        url, _, token = rest.partition(",")
        targets.append((name, url, token))
    clients = [int(c) for c in os.environ.get("CLIENTS", "1,4,16").split(",")]
    per_client = int(os.environ.get("REQUESTS_PER_CLIENT", "3"))
    rounds = int(os.environ.get("ROUNDS", "2"))
    model = os.environ.get("MODEL", "huggingfacetb.smollm2-135m-instruct-v1:0")
    results = {name: {} for name, _, _ in targets}
    for _ in range(rounds):
        for c in clients:
            for name, url, token in targets:
                results[name].setdefault(f"tok/s @{c}", []).append(throughput(url, token, model, c, per_client))
        for shared in (False, True):
            for name, url, token in targets:
                results[name].setdefault("TTFT ms " + ("shared" if shared else "cold"), []).append(ttft(url, token, model, shared))
    keys = list(next(iter(results.values())).keys())
    print(f"{'metric':<18}" + "".join(f"{n:>16}" for n, _, _ in targets) + ("      ratio" if len(targets) == 2 else ""))
    for k in keys:
        vals = [statistics.median(results[n][k]) for n, _, _ in targets]
        ratio = f"{vals[0] / vals[1]:>11.2f}" if len(vals) == 2 and vals[1] else ""
        print(f"{k:<18}" + "".join(f"{v:>16.1f}" for v in vals) + ratio)


if __name__ == "__main__":
    main()
