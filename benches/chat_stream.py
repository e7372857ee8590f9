"""One streamed OpenAI chat completion, timed: the client the engine benchmarks share
(cpu_contention.py, batch_invariance.py, prompt_lookup.py), for Basalt and
llama-server alike."""
import http.client
import json
import time
from urllib.parse import urlparse

MODEL = "huggingfacetb.smollm2-135m-instruct-v1:0"


def stream_chat(url, bearer, prompt, max_tokens=128, model=MODEL):
    """(text, seconds to the first content chunk, decode tok/s, completion tokens).

    Temperature 0. Decode rate = (completion tokens - 1) / (time of the last content
    chunk - time of the first), so prompt processing is outside the window; the token
    count is the stream's usage, else the number of content chunks."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=600)
    body = json.dumps({"model": model, "stream": True, "temperature": 0, "max_tokens": max_tokens,
                       "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": prompt}]})
    headers = {"Content-Type": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    started = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers)
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"chat answered {response.status}: {response.read()[:300]!r}")
    text, first, last, chunks, tokens = [], None, None, 0, None
    for raw in response:
        line = raw.strip()
        if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
            continue
        event = json.loads(line[5:])
        if event.get("usage"):
            tokens = event["usage"].get("completion_tokens")
        choices = event.get("choices") or []
        piece = (choices[0].get("delta") or {}).get("content") if choices else None
        if piece:
            now = time.perf_counter()
            first = first or now
            last = now
            chunks += 1
            text.append(piece)
    conn.close()
    tokens = tokens or chunks
    rate = (tokens - 1) / (last - first) if first and last > first else 0.0
    return "".join(text), (first or started) - started, rate, tokens
