"""A wire-faithful test double of Cohere's v2 API: Chat (`POST /v2/chat`), Embed
(`POST /v2/embed`) and Rerank (`POST /v2/rerank`).

Follows Cohere's API reference (https://docs.cohere.com/reference/chat,
https://docs.cohere.com/reference/chat-stream, https://docs.cohere.com/reference/embed)
and its tool-use guide (https://docs.cohere.com/docs/tool-use: `tools` as functions,
`tool_choice` REQUIRED / NONE, assistant `tool_calls` with string `arguments`, `tool`
messages with `tool_call_id`). The stream is server-sent events, each an `event:` line
naming the type and a `data:` line with the JSON (`message-start`, `content-start`,
`content-delta`, `content-end`, `tool-plan-delta`, `tool-call-start`,
`tool-call-delta`, `tool-call-end`, `message-end` with `finish_reason` and `usage`
`{billed_units, tokens}`). Errors as Cohere sends them (https://docs.cohere.com/reference/errors):
`{"id", "message"}` with 400 for an invalid request (an unknown field such as OpenAI's
`top_p`, `p` outside 0.01–0.99, `k` over 500, a `tool_choice` other than REQUIRED /
NONE, a tool result for no call), 401 for a bad token, 429 when rate limited.
Embed: at most 96 `texts`, `input_type` required, vectors in `embeddings.float`
(1024 floats, deterministic, see `vector`), `meta.billed_units.input_tokens`.

Rerank (https://docs.cohere.com/reference/rerank): `model`, `query`, `documents` (1 to
1,000 strings), `top_n`, `max_tokens_per_doc`; answers `results` `[{index,
relevance_score}]` most relevant first and `meta.billed_units.search_units` (one per
100 documents). Relevance here is lexical and deterministic: the share of the query's
words (three letters or more) a document contains, slightly lowered for longer
documents; a query containing "raise 429" is rate limited.

Behaviour is chosen by the last user text, as in the other doubles: "use the tool",
"raise 429" / "raise 503", "fail midway" (stream cut before `message-end`); otherwise
"You said: <text>" cut to max_tokens words (MAX_TOKENS) or at a stop sequence
(STOP_SEQUENCE). `requests` records every request.
"""
from __future__ import annotations

import json
import uuid

from double_http import DoubleServer, JsonHandler
from mistral_double import _example, tokens, vector

API_KEY = "cohere-test-double-key"
DIMENSIONS = 1024
MAX_TEXTS = 96

CHAT_FIELDS = {"model", "messages", "tools", "documents", "citation_options", "response_format", "safety_mode",
               "max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty", "presence_penalty", "k",
               "p", "logprobs", "tool_choice", "strict_tools", "stream", "thinking", "priority"}
RERANK_FIELDS = {"model", "query", "documents", "top_n", "max_tokens_per_doc", "priority"}
MAX_RERANK_DOCUMENTS = 1000
EMBED_FIELDS = {"model", "texts", "images", "inputs", "input_type", "embedding_types", "truncate",
                "output_dimension", "max_tokens"}


def _invalid(message: str) -> tuple[int, dict]:
    return 400, {"id": str(uuid.uuid4()), "message": f"invalid request: {message}"}


def validate_chat(body: dict):
    for key in body:
        if key not in CHAT_FIELDS:
            return _invalid(f"unknown field: parameter '{key}' is not a valid field")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _invalid("model is required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _invalid("messages is required")
    if "p" in body and not (0.01 <= body["p"] <= 0.99):
        return _invalid("p must be between 0.01 and 0.99")
    if "k" in body and not (isinstance(body["k"], int) and 0 <= body["k"] <= 500):
        return _invalid("k must be an integer between 0 and 500")
    if "temperature" in body and body["temperature"] < 0:
        return _invalid("temperature must be non-negative")
    if "tool_choice" in body and body["tool_choice"] not in ("REQUIRED", "NONE"):
        return _invalid("tool_choice must be one of REQUIRED, NONE")
    if "tool_choice" in body and not body.get("tools"):
        return _invalid("tool_choice requires tools")
    calls: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            return _invalid(f"messages[{i}].role must be one of system, user, assistant, tool")
        if role == "assistant":
            for c in m.get("tool_calls") or []:
                f = c.get("function") or {}
                if c.get("type") != "function" or not c.get("id") or not f.get("name") or not isinstance(
                        f.get("arguments"), str):
                    return _invalid(f"messages[{i}].tool_calls: id, type function, name and string arguments")
                calls.add(c["id"])
            if "content" not in m and not m.get("tool_calls"):
                return _invalid(f"messages[{i}]: an assistant message needs content or tool_calls")
        elif role == "tool":
            if m.get("tool_call_id") not in calls:
                return _invalid(f"messages[{i}].tool_call_id {m.get('tool_call_id')!r} matches no tool call")
            if not isinstance(m.get("content"), (str, list)):
                return _invalid(f"messages[{i}].content is required")
        elif not isinstance(m.get("content"), (str, list)):
            return _invalid(f"messages[{i}].content is required")
        elif isinstance(m["content"], list):
            for part in m["content"]:
                ok = (part.get("type") == "text" and isinstance(part.get("text"), str)) or (
                    part.get("type") == "image_url" and str((part.get("image_url") or {}).get("url", "")).startswith(
                        ("data:image/", "https://")))
                if not ok:
                    return _invalid(f"messages[{i}].content: parts are text or image_url {{url}}")
    for j, t in enumerate(body.get("tools") or []):
        f = t.get("function") or {}
        if t.get("type") != "function" or not f.get("name") or not isinstance(f.get("parameters", {}), dict):
            return _invalid(f"tools[{j}] must be {{type: function, function: {{name, parameters}}}}")
    fmt = body.get("response_format")
    if fmt is not None and fmt.get("type") not in ("text", "json_object"):
        return _invalid("response_format.type must be text or json_object")
    return None


def validate_embed(body: dict):
    for key in body:
        if key not in EMBED_FIELDS:
            return _invalid(f"unknown field: parameter '{key}' is not a valid field")
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return _invalid("texts must be a non-empty list of strings")
    if len(texts) > MAX_TEXTS:
        return _invalid(f"too many texts - texts must contain at most {MAX_TEXTS} items")
    if body.get("input_type") not in ("search_document", "search_query", "classification", "clustering", "image"):
        return _invalid("input_type is required for embed models v3 and higher")
    if body.get("embedding_types", ["float"]) != ["float"]:
        return _invalid("the double serves float embeddings only")
    return None


def validate_rerank(body: dict):
    for key in body:
        if key not in RERANK_FIELDS:
            return _invalid(f"unknown field: parameter '{key}' is not a valid field")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _invalid("model is required")
    if not isinstance(body.get("query"), str) or not body["query"].strip():
        return _invalid("query must not be empty")
    documents = body.get("documents")
    if not isinstance(documents, list) or not documents:
        return _invalid("list of documents must not be empty")
    if not all(isinstance(d, str) for d in documents):
        return _invalid("documents must be a list of strings")
    if len(documents) > MAX_RERANK_DOCUMENTS:
        return _invalid(f"too many documents - documents must contain at most {MAX_RERANK_DOCUMENTS} items")
    if "top_n" in body and not (isinstance(body["top_n"], int) and body["top_n"] > 0):
        return _invalid("top_n must be greater than 0")
    return None


def _words(text: str) -> list[str]:
    return ["".join(ch for ch in w if ch.isalnum()) for w in text.lower().split()]


def relevance(query: str, document: str) -> float:
    """The share of the query's words (3+ letters) found in the document, lowered a
    little for longer documents."""
    terms = {w for w in _words(query) if len(w) >= 3}
    words = _words(document)
    if not terms:
        return 0.0
    found = len(terms & set(words)) / len(terms)
    return round(found / (1 + 0.001 * len(words)), 6)


class CohereDouble:
    def __init__(self):
        self.requests: list[dict] = []
        double = self

        class Handler(JsonHandler):
            def _json(self, status, payload):
                self.send_json(status, payload, "application/json")

            def do_POST(self):
                raw = self.read_body()
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._json(*_invalid("the body is not valid JSON"))
                double.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.headers.get("authorization") != f"Bearer {API_KEY}":
                    return self._json(401, {"id": str(uuid.uuid4()), "message": "invalid api token"})
                if self.path == "/v2/embed":
                    return self.embed(body)
                if self.path == "/v2/rerank":
                    return self.rerank(body)
                if self.path != "/v2/chat":
                    return self._json(404, {"id": str(uuid.uuid4()), "message": f"404 page not found: {self.path}"})
                problem = validate_chat(body)
                if problem:
                    return self._json(*problem)
                last = body["messages"][-1]
                text = last["content"] if isinstance(last["content"], str) else " ".join(
                    c.get("text", "") for c in last["content"])
                if "raise 429" in text:
                    return self._json(429, {"id": str(uuid.uuid4()), "message": "You are using a Trial key, which is limited to 10 API calls / minute."})
                if "raise 503" in text:
                    return self._json(503, {"id": str(uuid.uuid4()), "message": "service unavailable"})
                content, calls, finish = self.answer(body, text)
                billed_in = sum(tokens(json.dumps(m.get("content") or "")) for m in body["messages"])
                out = tokens(content) or 6
                usage = {"billed_units": {"input_tokens": billed_in, "output_tokens": out},
                         "tokens": {"input_tokens": billed_in + 40, "output_tokens": out + 1}}
                if body.get("stream"):
                    return self.stream(content, calls, finish, usage, "fail midway" in text)
                message = {"role": "assistant"}
                if calls:
                    message["tool_plan"] = "I will call the tool."
                    message["tool_calls"] = calls
                else:
                    message["content"] = [{"type": "text", "text": content}]
                self._json(200, {"id": str(uuid.uuid4()), "finish_reason": finish, "message": message, "usage": usage})

            def answer(self, body, text):
                if "use the tool" in text and body.get("tools") and body.get("tool_choice") != "NONE":
                    f = body["tools"][0]["function"]
                    return "", [{"id": f"{f['name']}_{uuid.uuid4().hex[:8]}", "type": "function",
                                 "function": {"name": f["name"], "arguments": json.dumps(_example(f.get("parameters", {})))}}], "TOOL_CALL"
                words = f"You said: {text}".split()
                finish = "COMPLETE"
                for s in body.get("stop_sequences") or []:
                    if s in words:
                        words, finish = words[: words.index(s)], "STOP_SEQUENCE"
                        break
                if "max_tokens" in body and len(words) > body["max_tokens"]:
                    words, finish = words[: body["max_tokens"]], "MAX_TOKENS"
                return " ".join(words), [], finish

            def stream(self, content, calls, finish, usage, fail):
                self.start_events("text/event-stream")
                mid = str(uuid.uuid4())

                def send(data):
                    self.wfile.write(f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()

                send({"type": "message-start", "id": mid, "delta": {"message": {
                    "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}})
                if calls:
                    send({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will call the tool."}}})
                    for i, c in enumerate(calls):
                        args = c["function"]["arguments"]
                        send({"type": "tool-call-start", "index": i, "delta": {"message": {"tool_calls": {
                            "id": c["id"], "type": "function", "function": {"name": c["function"]["name"], "arguments": ""}}}}})
                        for part in (args[: len(args) // 2], args[len(args) // 2:]):
                            send({"type": "tool-call-delta", "index": i, "delta": {"message": {"tool_calls": {
                                "function": {"arguments": part}}}}})
                        send({"type": "tool-call-end", "index": i})
                else:
                    send({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}})
                    for k, w in enumerate(content.split(" ")):
                        send({"type": "content-delta", "index": 0, "delta": {"message": {"content": {
                            "text": w if k == 0 else " " + w}}}})
                        if fail and k == 1:
                            self.close_connection = True
                            return
                    send({"type": "content-end", "index": 0})
                send({"type": "message-end", "id": mid, "delta": {"finish_reason": finish, "usage": usage}})
                self.close_connection = True

            def embed(self, body):
                problem = validate_embed(body)
                if problem:
                    return self._json(*problem)
                n = sum(tokens(t) for t in body["texts"])
                self._json(200, {"id": str(uuid.uuid4()), "texts": body["texts"],
                                 "embeddings": {"float": [vector(t) for t in body["texts"]]},
                                 "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": n}},
                                 "response_type": "embeddings_by_type"})

            def rerank(self, body):
                problem = validate_rerank(body)
                if problem:
                    return self._json(*problem)
                if "raise 429" in body["query"]:
                    return self._json(429, {"id": str(uuid.uuid4()), "message": "You are using a Trial key, which is limited to 10 API calls / minute."})
                scored = sorted(((relevance(body["query"], d), i) for i, d in enumerate(body["documents"])),
                                key=lambda p: (-p[0], p[1]))
                top = scored[: body.get("top_n", len(scored))]
                units = -(-len(body["documents"]) // 100)
                self._json(200, {"id": str(uuid.uuid4()),
                                 "results": [{"index": i, "relevance_score": score} for score, i in top],
                                 "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": units}}})

        self.http = DoubleServer(Handler)
        self.port = self.http.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2"

    def last(self, path: str = "/v2/chat") -> dict:
        return next(r for r in reversed(self.requests) if r["path"] == path)["body"]

    def close(self):
        self.http.close()
