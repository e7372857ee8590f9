"""A wire-faithful test double of Google's Gemini API (v1beta): `generateContent`,
`streamGenerateContent?alt=sse` and `batchEmbedContents` under `/v1beta/models/{model}:`.

Follows the Gemini API reference (https://ai.google.dev/api/generate-content,
https://ai.google.dev/api/embeddings), its function-calling guide
(https://ai.google.dev/gemini-api/docs/function-calling: `tools.functionDeclarations`,
`toolConfig.functionCallingConfig` AUTO / ANY / NONE with `allowedFunctionNames`,
`functionCall {name, args}` parts in `model` turns answered by as many
`functionResponse {name, response}` parts in the next `user` turn) and the API's error
format (https://ai.google.dev/gemini-api/docs/troubleshooting: `{"error": {"code",
"message", "status"}}` — 400 INVALID_ARGUMENT for an unknown field, 400
`API_KEY_INVALID` for a bad key, 429 RESOURCE_EXHAUSTED, 503 UNAVAILABLE). The stream
is server-sent events, each `data:` a partial GenerateContentResponse; the last has the
`finishReason` and `usageMetadata`; there is no end marker.

Behaviour by the last user text, as in the other doubles ("use the tool", "raise 429",
"raise 503", "fail midway"); otherwise "You said: <text>" cut to maxOutputTokens
words (MAX_TOKENS). Embeddings: 768 floats per text (`vector768`).
"""
from __future__ import annotations

import json
import re
from urllib.parse import urlsplit, parse_qs

from double_http import DoubleServer, JsonHandler
from mistral_double import _example, tokens, vector

API_KEY = "gemini-test-double-key"
DIMENSIONS = 768
MAX_BATCH = 100

REQUEST_FIELDS = {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction", "generationConfig",
                  "cachedContent"}
GENERATION_FIELDS = {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "candidateCount",
                     "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty", "frequencyPenalty",
                     "responseLogprobs", "logprobs", "thinkingConfig", "responseModalities"}
PATH = re.compile(r"^/v1beta/models/([^/:]+):(generateContent|streamGenerateContent|batchEmbedContents)$")


def vector768(text: str) -> list[float]:
    v = vector(text)[:DIMENSIONS]
    n = sum(x * x for x in v) ** 0.5
    return [x / n for x in v]


def _error(code: int, status: str, message: str, reason: str | None = None) -> tuple[int, dict]:
    err = {"code": code, "message": message, "status": status}
    if reason:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                           "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]
    return code, {"error": err}


def _unknown(name: str):
    return _error(400, "INVALID_ARGUMENT", f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')


def validate_generate(body: dict):
    for key in body:
        if key not in REQUEST_FIELDS:
            return _unknown(key)
    for key in body.get("generationConfig", {}):
        if key not in GENERATION_FIELDS:
            return _unknown(f"generation_config.{key}")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return _error(400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified")
    pending: list[str] = []
    for i, c in enumerate(contents):
        if c.get("role") not in ("user", "model"):
            return _error(400, "INVALID_ARGUMENT", f"Please use a valid role: user, model. (contents[{i}])")
        parts = c.get("parts")
        if not isinstance(parts, list) or not parts:
            return _error(400, "INVALID_ARGUMENT", f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        if c["role"] == "user" and pending:
            if sorted(r.get("name") for r in responses) != sorted(pending):
                return _error(400, "INVALID_ARGUMENT", "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.")
            pending = []
        elif responses:
            return _error(400, "INVALID_ARGUMENT", "Please ensure that function response turn comes immediately after a function call turn.")
        for p in parts:
            if not any(k in p for k in ("text", "functionCall", "functionResponse", "inlineData")):
                return _error(400, "INVALID_ARGUMENT", f"contents[{i}].parts: a part needs data")
            if "functionCall" in p:
                if c["role"] != "model" or not p["functionCall"].get("name"):
                    return _error(400, "INVALID_ARGUMENT", "functionCall parts belong to model turns and need a name")
                pending.append(p["functionCall"]["name"])
            if "inlineData" in p and not (p["inlineData"].get("mimeType", "").startswith("image/")
                                           and isinstance(p["inlineData"].get("data"), str)):
                return _error(400, "INVALID_ARGUMENT", "inline_data needs mime_type and base64 data")
            if "functionResponse" in p and not isinstance(p["functionResponse"].get("response"), dict):
                return _error(400, "INVALID_ARGUMENT", "functionResponse.response must be an object")
    names = []
    for t in body.get("tools", []):
        for d in t.get("functionDeclarations", []):
            if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_.\-]{0,63}$", d.get("name", "")):
                return _error(400, "INVALID_ARGUMENT", "function_declarations[].name: invalid name")
            if "parameters" in d and "parametersJsonSchema" in d:
                return _error(400, "INVALID_ARGUMENT", "parameters and parametersJsonSchema are exclusive")
            names.append(d["name"])
    mode_config = body.get("toolConfig", {}).get("functionCallingConfig", {})
    if mode_config.get("mode", "AUTO") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        return _error(400, "INVALID_ARGUMENT", "function_calling_config.mode: invalid value")
    for n in mode_config.get("allowedFunctionNames", []):
        if n not in names:
            return _error(400, "INVALID_ARGUMENT", f"allowed_function_names {n} is not declared")
    if "allowedFunctionNames" in mode_config and mode_config.get("mode") != "ANY":
        return _error(400, "INVALID_ARGUMENT", "allowed_function_names may be set only with mode ANY")
    return None


class GeminiDouble:
    def __init__(self):
        self.requests: list[dict] = []
        double = self

        class Handler(JsonHandler):
            def _json(self, status, payload):
                self.send_json(status, payload, "application/json; charset=UTF-8")

            def do_POST(self):
                raw = self.read_body()
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                match = PATH.match(url.path)
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._json(*_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
                double.requests.append({"path": url.path, "query": query, "headers": dict(self.headers), "body": body})
                if self.headers.get("x-goog-api-key") != API_KEY:
                    return self._json(*_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"))
                if not match:
                    return self._json(*_error(404, "NOT_FOUND", f"Requested entity was not found: {url.path}"))
                model, method = match.groups()
                if method == "batchEmbedContents":
                    return self.embed(model, body)
                problem = validate_generate(body)
                if problem:
                    return self._json(*problem)
                last = body["contents"][-1]
                text = " ".join(p.get("text", "") or json.dumps(p.get("functionResponse", {}).get("response", ""))
                                for p in last["parts"])
                if "raise 429" in text:
                    return self._json(*_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."))
                if "raise 503" in text:
                    return self._json(*_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."))
                parts, finish = self.answer(body, text)
                prompt = sum(tokens(json.dumps(c["parts"])) for c in body["contents"])
                out = sum(tokens(p.get("text", "")) for p in parts) or 4
                usage = {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out}
                if method == "streamGenerateContent":
                    if query.get("alt") != ["sse"]:
                        return self._json(*_error(400, "INVALID_ARGUMENT", "the double serves alt=sse streams only"))
                    return self.stream(parts, finish, usage, "fail midway" in text)
                self._json(200, {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish,
                                                 "index": 0}], "usageMetadata": usage, "modelVersion": model})

            def answer(self, body, text):
                config = body.get("toolConfig", {}).get("functionCallingConfig", {})
                declared = [d for t in body.get("tools", []) for d in t.get("functionDeclarations", [])]
                if "use the tool" in text and declared and config.get("mode") != "NONE":
                    allowed = config.get("allowedFunctionNames")
                    d = next(d for d in declared if not allowed or d["name"] in allowed)
                    schema = d.get("parametersJsonSchema") or d.get("parameters") or {}
                    return [{"functionCall": {"name": d["name"], "args": _example(schema)}}], "STOP"
                words = f"You said: {text}".split()
                finish = "STOP"
                g = body.get("generationConfig", {})
                for s in g.get("stopSequences", []):
                    if s in words:
                        words = words[: words.index(s)]
                        break
                if "maxOutputTokens" in g and len(words) > g["maxOutputTokens"]:
                    words, finish = words[: g["maxOutputTokens"]], "MAX_TOKENS"
                return [{"text": " ".join(words)}], finish

            def stream(self, parts, finish, usage, fail):
                self.start_events("text/event-stream")

                def send(chunk):
                    self.wfile.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
                    self.wfile.flush()

                if "functionCall" in parts[0]:
                    send({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish,
                                          "index": 0}], "usageMetadata": usage})
                else:
                    words = parts[0]["text"].split(" ")
                    for k, w in enumerate(words):
                        chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": w if k == 0 else " " + w}]},
                                                 "index": 0}],
                                 "usageMetadata": {"promptTokenCount": usage["promptTokenCount"]}}
                        if k == len(words) - 1:
                            chunk["candidates"][0]["finishReason"] = finish
                            chunk["usageMetadata"] = usage
                        send(chunk)
                        if fail and k == 1:
                            break
                self.close_connection = True

            def embed(self, model, body):
                for key in body:
                    if key != "requests":
                        return self._json(*_unknown(key))
                requests = body.get("requests")
                if not isinstance(requests, list) or not requests:
                    return self._json(*_error(400, "INVALID_ARGUMENT", "requests must not be empty"))
                if len(requests) > MAX_BATCH:
                    return self._json(*_error(400, "INVALID_ARGUMENT", f"at most {MAX_BATCH} requests are allowed in a batch"))
                for r in requests:
                    if r.get("model") != f"models/{model}":
                        return self._json(*_error(400, "INVALID_ARGUMENT", "each request's model must be the batch's model"))
                    if not r.get("content", {}).get("parts"):
                        return self._json(*_error(400, "INVALID_ARGUMENT", "content.parts must not be empty"))
                self._json(200, {"embeddings": [{"values": vector768(" ".join(p["text"] for p in r["content"]["parts"]))}
                                                for r in requests]})

        self.http = DoubleServer(Handler)
        self.port = self.http.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1beta"

    def last(self, method: str = "generateContent") -> dict:
        return next(r for r in reversed(self.requests) if r["path"].endswith(":" + method))

    def close(self):
        self.http.close()
