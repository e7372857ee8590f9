"""A wire-faithful test double of Mistral's API: chat completions
(`POST /v1/chat/completions`) and embeddings (`POST /v1/embeddings`).

Follows Mistral's public API reference (https://docs.mistral.ai/api/ — "Chat
Completion" and "Embeddings"), its function-calling guide
(https://docs.mistral.ai/capabilities/function_calling/: `tools`, `tool_choice`
auto / none / any / required, tool-call IDs of nine letters and digits, `tool`
messages with `tool_call_id`) and its streaming format (server-sent events, one
`chat.completion.chunk` per `data:` line, the last chunk carrying `finish_reason` and
`usage`, then `data: [DONE]`). Errors as Mistral answers them: 401 `{"message":
"Unauthorized"}`, 422 for a body its schema rejects (`{"object": "error", "message":
{"detail": [{"type": "extra_forbidden", "loc": [...], "msg": ...}]}, "type":
"invalid_request_error"}` — unknown fields such as OpenAI's `seed` or
`stream_options` are rejected this way), 400 `invalid_request_error` for a bad tool
call ID, 429 `{"message": "Requests rate limit exceeded"}`.

Behaviour is chosen by the last user text:
  contains "use the tool"  -> a tool call of the first tool (arguments from its schema)
  "raise 429" / "raise 503" -> that HTTP error
  "fail midway"            -> (stream) some text, then the connection is cut
otherwise the answer is "You said: <text>", cut to max_tokens words (finish_reason
length) or at a stop sequence. Embeddings are deterministic unit vectors of
`DIMENSIONS` floats derived from each text's SHA-256; `vector(text)` gives the same.
`requests` records every request (path, headers, body).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import struct

from double_http import DoubleServer, JsonHandler

API_KEY = "mistral-test-double-key"
DIMENSIONS = 1024
TOOL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")

CHAT_FIELDS = {"model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
               "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n",
               "prediction", "parallel_tool_calls", "prompt_mode", "safe_prompt"}
EMBED_FIELDS = {"model", "input", "output_dimension", "output_dtype", "encoding_format"}


def vector(text: str) -> list[float]:
    raw = b""
    counter = 0
    while len(raw) < DIMENSIONS * 4:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [(x / 2**32) - 0.5 for x in struct.unpack(f"<{DIMENSIONS}I", raw[: DIMENSIONS * 4])]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def _example(schema: dict):
    t = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if t == "object":
        return {k: _example(v) for k, v in schema.get("properties", {}).items()}
    if t == "array":
        return [_example(schema.get("items", {"type": "string"}))]
    if t == "integer":
        return 1
    if t == "number":
        return 1.5
    if t == "boolean":
        return True
    return "Paris"


def _unprocessable(loc: list, msg: str, kind: str = "value_error") -> tuple[int, dict]:
    return 422, {"object": "error", "message": {"detail": [{"type": kind, "loc": ["body", *loc], "msg": msg}]},
                 "type": "invalid_request_error", "param": None, "code": None}


def _bad_request(msg: str) -> tuple[int, dict]:
    return 400, {"object": "error", "message": msg, "type": "invalid_request_error", "param": None, "code": None}


def validate_chat(body: dict):
    """(status, error body) for a request Mistral would refuse, or None."""
    for key in body:
        if key not in CHAT_FIELDS:
            return _unprocessable([key], "Extra inputs are not permitted", "extra_forbidden")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _unprocessable(["model"], "Field required", "missing")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _unprocessable(["messages"], "Field required", "missing")
    if "max_tokens" in body and (not isinstance(body["max_tokens"], int) or body["max_tokens"] < 0):
        return _unprocessable(["max_tokens"], "Input should be a non-negative integer")
    if "random_seed" in body and not isinstance(body["random_seed"], int):
        return _unprocessable(["random_seed"], "Input should be a valid integer")
    for k, hi in (("temperature", 1.5), ("top_p", 1.0)):
        if k in body and not (0 <= body[k] <= hi):
            return _unprocessable([k], f"Input should be between 0 and {hi}")
    if "stop" in body and not isinstance(body["stop"], (str, list)):
        return _unprocessable(["stop"], "Input should be a string or a list of strings")
    pending_calls: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            return _unprocessable(["messages", i, "role"], "Input should be 'system', 'user', 'assistant' or 'tool'")
        if role == "assistant":
            for call in m.get("tool_calls") or []:
                if not TOOL_ID.match(str(call.get("id", ""))):
                    return _bad_request(f"Tool call id was {call.get('id')} but must be a-z, A-Z, 0-9, with a length of 9.")
                f = call.get("function") or {}
                if not f.get("name") or not isinstance(f.get("arguments"), (str, dict)):
                    return _unprocessable(["messages", i, "tool_calls"], "function name and arguments are required")
                pending_calls.add(call["id"])
            if not m.get("content") and not m.get("tool_calls"):
                return _bad_request("Assistant message must have either content or tool_calls, but not none.")
        elif role == "tool":
            tid = m.get("tool_call_id")
            if not TOOL_ID.match(str(tid or "")):
                return _bad_request(f"Tool call id was {tid} but must be a-z, A-Z, 0-9, with a length of 9.")
            if tid not in pending_calls:
                return _bad_request(f"Unexpected tool call id {tid} in tool results")
        elif not isinstance(m.get("content"), (str, list)):
            return _unprocessable(["messages", i, "content"], "Field required", "missing")
        elif isinstance(m["content"], list):
            for j, part in enumerate(m["content"]):
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    continue
                if part.get("type") == "image_url" and isinstance(url, str) and (
                        url.startswith("data:image/") or url.startswith("https://")):
                    continue
                return _unprocessable(["messages", i, "content", j], "Input should be a text or image_url chunk")
    if messages[-1]["role"] == "assistant":
        return _bad_request("Expected last role User or Tool (or Assistant with prefix True) for serving but got assistant")
    for j, t in enumerate(body.get("tools") or []):
        f = t.get("function") or {}
        if t.get("type") != "function" or not f.get("name") or not isinstance(f.get("parameters", {}), dict):
            return _unprocessable(["tools", j], "each tool is {type: function, function: {name, parameters}}")
    choice = body.get("tool_choice")
    if choice is not None and not (choice in ("auto", "none", "any", "required") or (
            isinstance(choice, dict) and choice.get("type") == "function" and (choice.get("function") or {}).get("name"))):
        return _unprocessable(["tool_choice"], "Input should be 'auto', 'none', 'any', 'required' or a function")
    fmt = body.get("response_format")
    if fmt is not None and fmt.get("type") not in ("text", "json_object", "json_schema"):
        return _unprocessable(["response_format", "type"], "Input should be 'text', 'json_object' or 'json_schema'")
    return None


def validate_embed(body: dict):
    for key in body:
        if key not in EMBED_FIELDS:
            return _unprocessable([key], "Extra inputs are not permitted", "extra_forbidden")
    if not isinstance(body.get("model"), str):
        return _unprocessable(["model"], "Field required", "missing")
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) for x in inputs):
        return _unprocessable(["input"], "Input should be a string or a list of strings")
    return None


def tokens(text: str) -> int:
    return len(text.split())


class MistralDouble:
    def __init__(self):
        self.requests: list[dict] = []
        self.calls = 0
        double = self

        class Handler(JsonHandler):
            def _json(self, status, payload):
                self.send_json(status, payload, "application/json")

            def do_POST(self):
                raw = self.read_body()
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._json(*_unprocessable([], "JSON decode error", "json_invalid"))
                double.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.headers.get("authorization") != f"Bearer {API_KEY}":
                    return self._json(401, {"message": "Unauthorized", "request_id": "double"})
                if self.path == "/v1/embeddings":
                    return self.embeddings(body)
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"detail": "Not Found"})
                problem = validate_chat(body)
                if problem:
                    return self._json(*problem)
                last = next(m for m in reversed(body["messages"]) if m["role"] in ("user", "tool"))
                text = last["content"] if isinstance(last["content"], str) else " ".join(
                    c.get("text", "") for c in last["content"])
                if "raise 429" in text:
                    return self._json(429, {"message": "Requests rate limit exceeded"})
                if "raise 503" in text:
                    return self._json(503, {"object": "error", "message": "Service unavailable", "type": "service_unavailable"})
                prompt_tokens = sum(tokens(json.dumps(m.get("content") or "")) for m in body["messages"])
                message, finish = self.answer(body, text)
                completion_tokens = tokens(message.get("content") or "") or 5
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                         "total_tokens": prompt_tokens + completion_tokens}
                if body.get("stream"):
                    return self.stream(body, message, finish, usage, "fail midway" in text)
                self._json(200, {"id": "cmpl-double", "object": "chat.completion", "created": 1700000000,
                                 "model": body["model"], "usage": usage,
                                 "choices": [{"index": 0, "message": message, "finish_reason": finish}]})

            def answer(self, body, text):
                if "use the tool" in text and body.get("tools") and body.get("tool_choice") != "none":
                    double.calls += 1
                    f = body["tools"][0]["function"]
                    call_id = f"dbl{double.calls:06d}"
                    return ({"role": "assistant", "content": "", "prefix": False, "tool_calls": [
                        {"id": call_id, "type": "function", "index": 0,
                         "function": {"name": f["name"], "arguments": json.dumps(_example(f.get("parameters", {})))}}]},
                            "tool_calls")
                words = f"You said: {text}".split()
                finish = "stop"
                stops = body.get("stop") or []
                for s in [stops] if isinstance(stops, str) else stops:
                    if s in words:
                        words = words[: words.index(s)]
                        break
                if "max_tokens" in body and len(words) > body["max_tokens"]:
                    words, finish = words[: body["max_tokens"]], "length"
                return {"role": "assistant", "content": " ".join(words), "prefix": False, "tool_calls": None}, finish

            def stream(self, body, message, finish, usage, fail):
                self.start_events("text/event-stream; charset=utf-8")

                def chunk(delta, finish_reason=None, with_usage=False):
                    c = {"id": "cmpl-double", "object": "chat.completion.chunk", "created": 1700000000,
                         "model": body["model"],
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
                    if with_usage:
                        c["usage"] = usage
                    self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
                    self.wfile.flush()

                chunk({"role": "assistant", "content": ""})
                if message.get("tool_calls"):
                    chunk({"tool_calls": message["tool_calls"]}, "tool_calls", True)
                else:
                    words = message["content"].split(" ")
                    for k, w in enumerate(words):
                        last = k == len(words) - 1
                        chunk({"content": w if k == 0 else " " + w}, finish if last else None, last)
                        if fail and k == 1:
                            self.close_connection = True
                            return
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def embeddings(self, body):
                problem = validate_embed(body)
                if problem:
                    return self._json(*problem)
                inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
                n = sum(tokens(t) for t in inputs)
                self._json(200, {"id": "embd-double", "object": "list", "model": body["model"],
                                 "data": [{"object": "embedding", "embedding": vector(t), "index": i}
                                          for i, t in enumerate(inputs)],
                                 "usage": {"prompt_tokens": n, "total_tokens": n, "completion_tokens": 0}})

        self.http = DoubleServer(Handler)
        self.port = self.http.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def last(self, path: str = "/v1/chat/completions") -> dict:
        return next(r for r in reversed(self.requests) if r["path"] == path)["body"]

    def close(self):
        self.http.close()
