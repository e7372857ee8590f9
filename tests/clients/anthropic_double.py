"""A wire-faithful test double of Anthropic's Messages API (`POST /v1/messages`).

Follows Anthropic's public documentation of the Messages API
(https://docs.anthropic.com/en/api/messages), its streaming format
(https://docs.anthropic.com/en/docs/build-with-claude/streaming: `event:` + `data:`
lines for message_start, content_block_start, ping, content_block_delta with
text_delta / input_json_delta, content_block_stop, message_delta, message_stop, and
`error` events) and its errors (https://docs.anthropic.com/en/api/errors:
`{"type": "error", "error": {"type", "message"}}`, 401 authentication_error, 400
invalid_request_error, 429 rate_limit_error with `retry-after`, 529 overloaded_error).

It checks every request it gets against that documentation (headers, required
fields, role alternation, block types) and answers 400 invalid_request_error, as
Anthropic does, when a request is wrong; `requests` records what it received.

Behaviour is chosen by the last user text:
  contains "use the tool"  -> a tool_use block for the first tool (input from its schema)
  "raise 429" / "raise 529" / "raise 500"  -> that HTTP error
  "fail midway"            -> (stream) some text, then an `error` event
otherwise the answer is "You said: <text>", cut to max_tokens words
(stop_reason max_tokens) or at a stop sequence (stop_reason stop_sequence).
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "sk-ant-test-double-key"


def _error(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}


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


def validate(headers, body) -> str | None:
    """What is wrong with a request, per Anthropic's documentation, or None."""
    if headers.get("x-api-key") is None:
        return "missing x-api-key"
    if headers.get("anthropic-version") != "2023-06-01":
        return "anthropic-version must be 2023-06-01"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: field required (integer >= 1)"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if "system" in body and not isinstance(body["system"], (str, list)):
        return "system: must be a string or a list of text blocks"
    expected = "user"
    for i, m in enumerate(messages):
        if m.get("role") != expected:
            return f"messages.{i}.role: roles must alternate, starting with user"
        expected = "assistant" if expected == "user" else "user"
        content = m.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list) or not content:
            return f"messages.{i}.content: a string or a non-empty list of blocks"
        for j, b in enumerate(content):
            kind = b.get("type")
            ok = {
                "text": lambda: isinstance(b.get("text"), str),
                "tool_use": lambda: m["role"] == "assistant" and b.get("id") and b.get("name") and isinstance(b.get("input"), dict),
                "tool_result": lambda: m["role"] == "user" and b.get("tool_use_id"),
                "image": lambda: m["role"] == "user" and b.get("source", {}).get("type") == "base64"
                and b["source"].get("media_type") in ("image/jpeg", "image/png", "image/gif", "image/webp")
                and isinstance(b["source"].get("data"), str) and b["source"]["data"],
            }.get(kind)
            if ok is None or not ok():
                return f"messages.{i}.content.{j}: invalid {kind!r} block"
    for t in body.get("tools", []):
        if not t.get("name") or not isinstance(t.get("input_schema"), dict):
            return "tools: each tool needs name and input_schema"
    choice = body.get("tool_choice")
    if choice is not None and choice.get("type") not in ("auto", "any", "tool", "none"):
        return "tool_choice.type: invalid"
    for k in ("temperature", "top_p"):
        if k in body and not (0 <= body[k] <= 1):
            return f"{k}: must be between 0 and 1"
    return None


class AnthropicDouble:
    def __init__(self):
        self.requests: list[dict] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, status, payload, extra=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", "req_double")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                if self.path != "/v1/messages":
                    return self._json(404, _error("not_found_error", f"Not found: {self.path}"))
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._json(400, _error("invalid_request_error", "body is not JSON"))
                double.requests.append({"headers": dict(self.headers), "body": body})
                if self.headers.get("x-api-key") not in (None, API_KEY):
                    return self._json(401, _error("authentication_error", "invalid x-api-key"))
                problem = validate(self.headers, body)
                if problem:
                    return self._json(400, _error("invalid_request_error", problem))
                last = body["messages"][-1]["content"]
                text = last if isinstance(last, str) else " ".join(
                    b.get("text", "") if b["type"] == "text" else str(b.get("content", "")) for b in last
                )
                for code, kind in (("429", "rate_limit_error"), ("529", "overloaded_error"), ("500", "api_error")):
                    if f"raise {code}" in text:
                        return self._json(int(code), _error(kind, f"double says {kind}"), {"retry-after": "3"} if code == "429" else None)
                input_tokens = sum(len(json.dumps(m["content"]).split()) for m in body["messages"])
                blocks, stop, stop_seq = self.answer(body, text)
                output_tokens = sum(len(b.get("text", "").split()) or 3 for b in blocks)
                if body.get("stream"):
                    return self.stream(body, blocks, stop, stop_seq, input_tokens, output_tokens, "fail midway" in text)
                self._json(200, {
                    "id": "msg_double", "type": "message", "role": "assistant", "model": body["model"],
                    "content": blocks, "stop_reason": stop, "stop_sequence": stop_seq,
                    "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
                })

            def answer(self, body, text):
                if "use the tool" in text and body.get("tools"):
                    tool = body["tools"][0]
                    return ([{"type": "tool_use", "id": "toolu_double_1", "name": tool["name"],
                              "input": _example(tool["input_schema"])}], "tool_use", None)
                words = f"You said: {text}".split()
                stop, stop_seq = "end_turn", None
                for s in body.get("stop_sequences", []):
                    if s in words:
                        words, stop, stop_seq = words[: words.index(s)], "stop_sequence", s
                        break
                if len(words) > body["max_tokens"]:
                    words, stop, stop_seq = words[: body["max_tokens"]], "max_tokens", None
                return [{"type": "text", "text": " ".join(words)}], stop, stop_seq

            def stream(self, body, blocks, stop, stop_seq, input_tokens, output_tokens, fail):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()

                def send(event, data):
                    self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()

                send("message_start", {"type": "message_start", "message": {
                    "id": "msg_double", "type": "message", "role": "assistant", "content": [], "model": body["model"],
                    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})
                send("ping", {"type": "ping"})
                for i, b in enumerate(blocks):
                    if b["type"] == "text":
                        send("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
                        words = b["text"].split(" ")
                        for k, w in enumerate(words):
                            piece = w if k == 0 else " " + w
                            send("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}})
                            if fail and k == 1:
                                send("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                                self.close_connection = True
                                return
                    else:
                        send("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}})
                        js = json.dumps(b["input"])
                        for part in (js[: len(js) // 2], js[len(js) // 2:]):
                            send("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": part}})
                    send("content_block_stop", {"type": "content_block_stop", "index": i})
                send("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": stop_seq}, "usage": {"output_tokens": output_tokens}})
                send("message_stop", {"type": "message_stop"})
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
