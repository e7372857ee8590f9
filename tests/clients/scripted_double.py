"""A scripted, wire-faithful test double of OpenAI's Chat Completions and Embeddings
APIs (`POST /v1/chat/completions`, `POST /v1/embeddings`), for tests that need an
upstream model whose every answer they choose: agent loops above all.

Wire format (OpenAI's API reference, "Chat" and "Embeddings"):
  - a JSON answer is a `chat.completion` whose one choice holds the assistant message
    (`content`, `tool_calls[{id, type: "function", function{name, arguments}}]` with
    the arguments a JSON *string*) and a `finish_reason` (`stop`, or `tool_calls`);
  - with `stream: true` the answer is server-sent events, one `chat.completion.chunk`
    per `data:` line: the role first, the text one word per chunk, each tool call as a
    first delta `{index, id, type, function{name, arguments: ""}}` followed by argument
    fragments `{index, function{arguments}}`, then an empty delta carrying the
    `finish_reason`; with `stream_options.include_usage` every chunk has `usage: null`
    and one last chunk with `choices: []` carries the usage; then `data: [DONE]`;
  - errors are `{"error": {"message", "type", "param", "code"}}`: 401
    `invalid_api_key` without `Authorization: Bearer <API_KEY>`, 400
    `invalid_request_error` for a body OpenAI refuses (unknown fields, `stream_options`
    without `stream`, a `tool` message that answers no call of the assistant message
    before it, an assistant `tool_calls` left without its `tool` answers, tool-call
    arguments that are not a string, a tool name outside `^[a-zA-Z0-9_-]{1,64}$`, a
    `tool_choice` naming no declared tool).
  `top_k` is accepted (not OpenAI's, but vLLM, llama-server and Basalt take it, and
  Basalt's OpenAI adapter sends it when a caller sets topK).

Behaviour is a script, per upstream model name:
    double.script("agent-model", [
        {"text": "Hello there"},
        {"tool_calls": [{"name": "orders__get_order", "arguments": {"order_id": "A1"}}]},
        {"text": "Let me check.", "tool_calls": [...]},     # text and calls together
        {"error": 500},                                     # that HTTP error
        lambda body: {"text": body["messages"][-1]["content"]},   # answer from the request
    ])
Each chat request pops the next step of its model's queue; an empty (or absent) queue
answers the text "(script empty)". A step may add `"delay": seconds` (sleep before
answering). Usage: `prompt_tokens` is the number of whitespace-separated words in the
text of all request messages, `completion_tokens` the number of words of the answer's
text plus, per tool call, one for its name and the words of its arguments JSON.

Records: `requests` (every chat request body, refused ones included, in arrival order),
`chat_requests(model)`, `answers` (what was answered to each of those requests:
`{"status", "text", "tool_calls", "usage"}`), `rejections` (bodies the double refused as
OpenAI would, with the reason), `errors` (scripted callables that raised; those requests
got a 500), `embedding_requests`, `log` (path, headers and body of
every request). `reset()` clears scripts and records.

Embeddings are deterministic unit vectors of `DIMENSIONS` floats derived from each
text's SHA-256 (`vector(text)` gives the same).

Run standalone (`python scripted_double.py`) to serve on a free port until Ctrl-C.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import struct
import threading
import time
from typing import Callable

from double_http import DoubleServer, JsonHandler

API_KEY = "scripted-test-double-key"
DIMENSIONS = 64
EMPTY = "(script empty)"
CREATED = 1700000000

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
CHAT_FIELDS = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed",
    "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "response_format", "n",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user", "store",
    "metadata", "reasoning_effort", "service_tier", "modalities", "prediction", "audio", "web_search_options",
    "top_k",
}
EMBED_FIELDS = {"model", "input", "dimensions", "encoding_format", "user"}


def vector(text: str) -> list[float]:
    """The unit vector the double answers for `text`."""
    raw = b""
    counter = 0
    while len(raw) < DIMENSIONS * 4:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [(x / 2**32) - 0.5 for x in struct.unpack(f"<{DIMENSIONS}I", raw[: DIMENSIONS * 4])]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def words(text) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def message_text(message: dict) -> str:
    """The text of a request message (string content, or the text parts of a list)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def prompt_tokens(body: dict) -> int:
    return sum(words(message_text(m)) for m in body.get("messages") or [] if isinstance(m, dict))


def _error(status: int, message: str, kind: str = "invalid_request_error", param=None, code=None):
    return status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


def validate_chat(body) -> tuple[int, dict] | None:
    """(status, error body) for a request OpenAI would refuse, or None."""
    if not isinstance(body, dict):
        return _error(400, "The request body must be a JSON object.")
    for key in body:
        if key not in CHAT_FIELDS:
            return _error(400, f"Unrecognized request argument supplied: {key}")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _error(400, "you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "'messages' must contain at least one message", param="messages")
    if "stream_options" in body and not body.get("stream"):
        return _error(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                      param="stream_options")
    for k in ("max_tokens", "max_completion_tokens"):
        if k in body and (not isinstance(body[k], int) or isinstance(body[k], bool) or body[k] < 1):
            return _error(400, f"Invalid '{k}': integer below minimum value.", param=k)
    if "temperature" in body and not (isinstance(body["temperature"], (int, float)) and 0 <= body["temperature"] <= 2):
        return _error(400, "Invalid 'temperature': must be between 0 and 2.", param="temperature")
    if "top_p" in body and not (isinstance(body["top_p"], (int, float)) and 0 <= body["top_p"] <= 1):
        return _error(400, "Invalid 'top_p': must be between 0 and 1.", param="top_p")
    if "stop" in body and body["stop"] is not None:
        stop = body["stop"]
        if not (isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 4
                                          and all(isinstance(s, str) for s in stop))):
            return _error(400, "Invalid 'stop': a string or up to 4 strings.", param="stop")
    open_calls: list[str] = []  # tool_call_ids the previous assistant message still waits for
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return _error(400, f"Invalid type for 'messages[{i}]': expected an object.", param=f"messages[{i}]")
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return _error(400, f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                               "'tool', and 'developer'.", param=f"messages[{i}].role")
        if role != "tool" and open_calls:
            return _error(400, "An assistant message with 'tool_calls' must be followed by tool messages responding "
                               "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                               + ", ".join(open_calls), param="messages")
        if role == "tool":
            tid = m.get("tool_call_id")
            if tid not in open_calls:
                return _error(400, "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                                   "message with 'tool_calls'.", param=f"messages.[{i}].role")
            open_calls.remove(tid)
            if not isinstance(m.get("content"), (str, list)):
                return _error(400, f"Missing required parameter: 'messages[{i}].content'.",
                              param=f"messages[{i}].content")
        elif role == "assistant":
            calls = m.get("tool_calls")
            if calls is not None:
                if not isinstance(calls, list) or not calls:
                    return _error(400, f"Invalid 'messages[{i}].tool_calls': empty array.",
                                  param=f"messages[{i}].tool_calls")
                for j, call in enumerate(calls):
                    f = call.get("function") if isinstance(call, dict) else None
                    if (not isinstance(call, dict) or call.get("type") != "function" or not isinstance(call.get("id"), str)
                            or not isinstance(f, dict) or not isinstance(f.get("name"), str)):
                        return _error(400, f"Invalid 'messages[{i}].tool_calls[{j}]': "
                                           "expected {id, type: 'function', function: {name, arguments}}.",
                                      param=f"messages[{i}].tool_calls[{j}]")
                    if not isinstance(f.get("arguments"), str):
                        return _error(400, f"Invalid type for 'messages[{i}].tool_calls[{j}].function.arguments': "
                                           "expected a string.", param=f"messages[{i}].tool_calls[{j}].function.arguments")
                    open_calls.append(call["id"])
            elif not isinstance(m.get("content"), (str, list)):
                return _error(400, f"Invalid value for 'messages[{i}].content': expected a string or an array; "
                                   "an assistant message needs content or tool_calls.", param=f"messages[{i}].content")
        elif not isinstance(m.get("content"), (str, list)):
            return _error(400, f"Missing required parameter: 'messages[{i}].content'.", param=f"messages[{i}].content")
    if open_calls:
        return _error(400, "An assistant message with 'tool_calls' must be followed by tool messages responding to "
                           "each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                           + ", ".join(open_calls), param="messages")
    tools = body.get("tools")
    names = set()
    if tools is not None:
        if not isinstance(tools, list):
            return _error(400, "Invalid type for 'tools': expected an array.", param="tools")
        for j, t in enumerate(tools):
            f = t.get("function") if isinstance(t, dict) else None
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(f, dict):
                return _error(400, f"Invalid 'tools[{j}]': expected {{type: 'function', function: {{...}}}}.",
                              param=f"tools[{j}]")
            name = f.get("name")
            if not isinstance(name, str) or not TOOL_NAME.match(name):
                return _error(400, f"Invalid 'tools[{j}].function.name': string does not match pattern. Expected a "
                                   "string that matches the pattern '^[a-zA-Z0-9_-]+$' (at most 64 characters).",
                              param=f"tools[{j}].function.name", code="invalid_value")
            params = f.get("parameters")
            if params is not None and not (isinstance(params, dict) and params.get("type", "object") == "object"):
                return _error(400, f"Invalid schema for function '{name}': schema must be a JSON Schema of "
                                   "'type: \"object\"'.", param=f"tools[{j}].function.parameters")
            names.add(name)
    choice = body.get("tool_choice")
    if choice is not None:
        if isinstance(choice, str):
            if choice not in ("none", "auto", "required"):
                return _error(400, f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
                              param="tool_choice")
            if choice == "required" and not names:
                return _error(400, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                                   "are specified.", param="tool_choice")
        elif not (isinstance(choice, dict) and choice.get("type") == "function"
                  and (choice.get("function") or {}).get("name") in names):
            return _error(400, "Invalid 'tool_choice': must name a declared function.", param="tool_choice")
    return None


def validate_embed(body) -> tuple[int, dict] | None:
    if not isinstance(body, dict):
        return _error(400, "The request body must be a JSON object.")
    for key in body:
        if key not in EMBED_FIELDS:
            return _error(400, f"Unrecognized request argument supplied: {key}")
    if not isinstance(body.get("model"), str):
        return _error(400, "you must provide a model parameter", param="model")
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) and x for x in inputs):
        return _error(400, "'input' must be a non-empty string or a non-empty array of non-empty strings.",
                      param="input")
    if body.get("encoding_format", "float") not in ("float", "base64"):
        return _error(400, "Invalid 'encoding_format': expected 'float' or 'base64'.", param="encoding_format")
    if "dimensions" in body and body["dimensions"] != DIMENSIONS:
        return _error(400, f"This model does not support specifying dimensions other than {DIMENSIONS}.",
                      param="dimensions")
    return None


Step = dict | Callable[[dict], dict]


class ScriptedDouble:
    def __init__(self):
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Step]] = {}
        self.requests: list[dict] = []
        self.answers: list[dict] = []
        self.rejections: list[dict] = []
        self.errors: list[str] = []
        self.embedding_requests: list[dict] = []
        self.log: list[dict] = []
        self._calls = 0
        double = self

        class Handler(JsonHandler):
            def do_POST(self):
                raw = self.read_body()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with double._lock:
                    double.log.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                       "body": body, "at": time.monotonic()})
                if self.headers.get("authorization") != f"Bearer {API_KEY}":
                    return self.send_json(*_error(401, "Incorrect API key provided.", code="invalid_api_key"))
                if body is None:
                    return self.send_json(*_error(400, "We could not parse the JSON body of your request."))
                if self.path == "/v1/embeddings":
                    return self.embeddings(body)
                if self.path != "/v1/chat/completions":
                    return self.send_json(*_error(404, f"Invalid URL (POST {self.path})"))
                return self.chat(body)

            def chat(self, body):
                problem = validate_chat(body)
                with double._lock:
                    double.requests.append(body)
                    if problem is not None:
                        double.rejections.append({"body": body, "reason": problem[1]["error"]["message"]})
                        double.answers.append({"status": problem[0], "text": None, "tool_calls": [], "usage": None})
                if problem is not None:
                    return self.send_json(*problem)
                try:
                    step = double._next_step(body)
                except Exception as e:  # a scripted callable failed: say so, answer 500
                    with double._lock:
                        double.errors.append(f"scripted step for request {len(double.requests)} raised {e!r}")
                        double.answers.append({"status": 500, "text": None, "tool_calls": [], "usage": None})
                    return self.send_json(*_error(500, f"the scripted step raised {e!r}", "server_error"))
                if step.get("delay"):
                    time.sleep(float(step["delay"]))
                if "error" in step:
                    status = int(step["error"])
                    with double._lock:
                        double.answers.append({"status": status, "text": None, "tool_calls": [], "usage": None})
                    if status == 429:
                        return self.send_json(*_error(429, "Rate limit reached for requests", "requests",
                                                      code="rate_limit_exceeded"))
                    return self.send_json(*_error(status, "The server had an error while processing your request.",
                                                  "server_error"))
                text = step.get("text")
                calls = [double._call(c) for c in step.get("tool_calls") or []]
                completion = words(text) + sum(1 + words(c["function"]["arguments"]) for c in calls)
                usage = {"prompt_tokens": prompt_tokens(body), "completion_tokens": completion,
                         "total_tokens": prompt_tokens(body) + completion}
                finish = "tool_calls" if calls else "stop"
                with double._lock:
                    double.answers.append({"status": 200, "text": text, "tool_calls": calls, "usage": usage})
                if body.get("stream"):
                    return self.stream(body, text, calls, finish, usage)
                message = {"role": "assistant", "content": text, "refusal": None}
                if calls:
                    message["tool_calls"] = calls
                self.send_json(200, {
                    "id": "chatcmpl-" + secrets.token_hex(12), "object": "chat.completion", "created": CREATED,
                    "model": body["model"], "system_fingerprint": "fp_double",
                    "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                    "usage": usage})

            def stream(self, body, text, calls, finish, usage):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                cid = "chatcmpl-" + secrets.token_hex(12)
                self.start_events()

                def send(choices, chunk_usage=None):
                    chunk = {"id": cid, "object": "chat.completion.chunk", "created": CREATED, "model": body["model"],
                             "system_fingerprint": "fp_double", "choices": choices}
                    if include_usage:
                        chunk["usage"] = chunk_usage
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()

                def delta(d, finish_reason=None):
                    send([{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish_reason}])

                delta({"role": "assistant", "content": "", "refusal": None})
                if text:
                    for k, w in enumerate(text.split(" ")):
                        delta({"content": w if k == 0 else " " + w})
                for index, call in enumerate(calls):
                    delta({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                           "function": {"name": call["function"]["name"], "arguments": ""}}]})
                    args = call["function"]["arguments"]
                    half = len(args) // 2
                    for piece in (args[:half], args[half:]):
                        if piece:
                            delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                delta({}, finish)
                if include_usage:
                    send([], usage)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def embeddings(self, body):
                problem = validate_embed(body)
                if problem is not None:
                    return self.send_json(*problem)
                inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
                with double._lock:
                    double.embedding_requests.append(body)
                as_base64 = body.get("encoding_format") == "base64"

                def encode(v):
                    return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if as_base64 else v

                n = sum(words(t) for t in inputs)
                self.send_json(200, {"object": "list", "model": body["model"],
                                     "data": [{"object": "embedding", "index": i, "embedding": encode(vector(t))}
                                              for i, t in enumerate(inputs)],
                                     "usage": {"prompt_tokens": n, "total_tokens": n}})

        self.http = DoubleServer(Handler)
        self.port = self.http.port

    # ------------------------------------------------------------------ scripting

    def script(self, model: str, steps: list[Step]) -> None:
        """Sets (replaces) the queue of answers for upstream model `model`."""
        for s in steps:
            assert callable(s) or isinstance(s, dict), f"a step is a dict or a callable, got {s!r}"
        with self._lock:
            self._scripts[model] = list(steps)

    def remaining(self, model: str) -> int:
        with self._lock:
            return len(self._scripts.get(model, []))

    def _next_step(self, body: dict) -> dict:
        with self._lock:
            queue = self._scripts.get(body["model"])
            step = queue.pop(0) if queue else {"text": EMPTY}
        if callable(step):
            step = step(body)
        assert isinstance(step, dict), f"a scripted callable must return a step dict, got {step!r}"
        return step

    def _call(self, spec: dict) -> dict:
        with self._lock:
            self._calls += 1
            n = self._calls
        arguments = spec.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        return {"id": spec.get("id") or f"call_{n:04d}{secrets.token_hex(10)}", "type": "function",
                "function": {"name": spec["name"], "arguments": arguments}}

    # ------------------------------------------------------------------ records

    def chat_requests(self, model: str | None = None) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if model is None or (isinstance(r, dict) and r.get("model") == model)]

    def last(self, model: str | None = None) -> dict:
        got = self.chat_requests(model)
        assert got, f"the double received no chat request{' for ' + model if model else ''}"
        return got[-1]

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()
            self.answers.clear()
            self.rejections.clear()
            self.errors.clear()
            self.embedding_requests.clear()
            self.log.clear()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self.http.close()


if __name__ == "__main__":  # pragma: no cover - manual use
    d = ScriptedDouble()
    print(f"scripted double on {d.base_url} (key {API_KEY})")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        d.close()
