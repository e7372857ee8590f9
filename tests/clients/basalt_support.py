"""Constants and small helpers shared by the Basalt client acceptance tests.

Nothing here starts a server; fixtures live in conftest.py.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import socket
import threading
import urllib.parse
from typing import Callable, NamedTuple

import pytest
from botocore.exceptions import ClientError

REGION = "us-east-1"

CHAT_MODEL = "huggingfacetb.smollm2-135m-instruct-v1:0"
EMBED_MODEL = "sentence-transformers.all-minilm-l6-v2-v1:0"
EOL_MODEL = "huggingfacetb.smollm2-135m-instruct-v0:1"
LEGACY_MODEL = "huggingfacetb.smollm2-135m-instruct-v0:2"
UNKNOWN_MODEL = "nosuchvendor.no-such-model-v9:0"

EMBED_DIMS = 384

# A prompt that makes the tiny model talk for a long time (used where we need
# the answer to run into the token limit).
LONG_PROMPT = "Write a long story about a brave knight and a dragon."
# Prompts a tiny instruct model usually answers in one short sentence.
SHORT_PROMPTS = (
    "What is the capital of France?",
    "Say hello.",
    "What is 2 + 2?",
    "What color is the sky?",
)

CHATML_SPECIAL = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


def model_path(model_id: str, op: str) -> str:
    """Path of a runtime operation, with the model id percent-encoded like boto3 does."""
    return f"/model/{urllib.parse.quote(model_id, safe='')}/{op}"


def chatml(user: str, system: str | None = None) -> str:
    """A raw ChatML prompt, as an InvokeModel caller would build it."""
    parts = []
    if system is not None:
        parts.append(f"<|im_start|>system\n{system}<|im_end|>\n")
    parts.append(f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
    return "".join(parts)


def user_msg(text: str) -> dict:
    return {"role": "user", "content": [{"text": text}]}


def assistant_msg(text: str) -> dict:
    return {"role": "assistant", "content": [{"text": text}]}


def converse_text(resp: dict) -> str:
    """Concatenated text of the assistant message of a Converse response."""
    msg = resp["output"]["message"]
    return "".join(block.get("text", "") for block in msg["content"])


def pick_stop_word(text: str) -> tuple[str, int]:
    """A word (4+ letters) from the middle of `text` whose first occurrence is
    well past the start; returns (word, index of its first occurrence)."""
    words = re.findall(r"[A-Za-z]{4,}", text)
    assert len(words) >= 4, f"greedy answer too short to pick a stop word: {text!r}"
    mid = len(words) // 2
    for i in sorted(range(len(words)), key=lambda i: abs(i - mid)):
        pos = text.find(words[i])
        if pos > len(text) // 4:
            return words[i], pos
    raise AssertionError(f"no usable stop word in {text!r}")


def norm(v) -> float:
    return math.sqrt(sum(x * x for x in v))


def cosine(a, b) -> float:
    return sum(x * y for x, y in zip(a, b)) / (norm(a) * norm(b))


def max_abs_diff(a, b) -> float:
    assert len(a) == len(b), f"vector lengths differ: {len(a)} vs {len(b)}"
    return max(abs(x - y) for x, y in zip(a, b))


def expect_client_error(
    call: Callable[[], object],
    code: str,
    status: int,
    *,
    message_contains: str | None = None,
) -> ClientError:
    """Run `call`, expect a botocore ClientError with this code and HTTP status."""
    with pytest.raises(ClientError) as excinfo:
        result = call()
        # For event-stream operations the error could arrive inside the stream;
        # drain it so such an error is raised here too.
        if isinstance(result, dict):
            stream = result.get("stream") or result.get("body")
            if stream is not None and hasattr(stream, "__iter__"):
                for _ in stream:
                    pass
    err = excinfo.value
    resp = err.response
    got_code = resp.get("Error", {}).get("Code")
    got_status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
    assert (got_code, got_status) == (code, status), (
        f"expected {code} / HTTP {status}, got {got_code} / HTTP {got_status}; "
        f"error: {resp.get('Error')}"
    )
    message = resp["Error"].get("Message")
    assert message, f"{code} carries no message (body must be {{\"message\": ...}})"
    if message_contains is not None:
        assert message_contains in message, (
            f"{code} message should mention {message_contains!r}, got {message!r}"
        )
    assert resp["ResponseMetadata"].get("RequestId"), (
        f"{code} response has no x-amzn-RequestId header"
    )
    return err


class RawResponse(NamedTuple):
    status: int
    headers: dict  # lower-cased header names
    body: bytes

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:  # pragma: no cover - reported as a test failure
            raise AssertionError(
                f"response body is not JSON (HTTP {self.status}): {self.body[:500]!r}"
            ) from e

    def error_type(self) -> str | None:
        """Error code as botocore reads it from x-amzn-ErrorType (text before ':')."""
        value = self.headers.get("x-amzn-errortype")
        return value.split(":", 1)[0] if value is not None else None


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict | None = None,
    timeout: float = 300,
) -> RawResponse:
    """Minimal HTTP/1.1 client.

    The body is written from a second thread while the response is read, so a
    server that answers (and closes) before reading a large body is still
    observed correctly instead of surfacing as a broken pipe.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        hdrs = {"Host": f"127.0.0.1:{port}", "Connection": "close"}
        if body or method.upper() in ("POST", "PUT", "PATCH"):
            hdrs["Content-Length"] = str(len(body))
        hdrs.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()
        ) + "\r\n"
        sock.sendall(head.encode("latin-1"))

        def send_body():
            try:
                view = memoryview(body)
                for i in range(0, len(view), 1 << 16):
                    sock.sendall(view[i : i + (1 << 16)])
            except OSError:
                pass  # the server may legitimately stop reading an oversized body

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        data = resp.read()
        headers_out = {k.lower(): v for k, v in resp.getheaders()}
        status = resp.status
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
    sender.join(timeout=10)
    return RawResponse(status, headers_out, data)


def assert_bedrock_error(resp: RawResponse, code: str, status: int) -> dict:
    """Check a raw Bedrock-style error: status, x-amzn-ErrorType, x-amzn-RequestId, {"message"}."""
    assert resp.status == status, (
        f"expected HTTP {status} {code}, got HTTP {resp.status}: {resp.body[:300]!r}"
    )
    etype = resp.headers.get("x-amzn-errortype")
    assert etype is not None, f"HTTP {resp.status} error has no x-amzn-ErrorType header"
    assert resp.error_type() == code, f"x-amzn-ErrorType is {etype!r}, expected {code}"
    assert resp.headers.get("x-amzn-requestid"), "error response has no x-amzn-RequestId"
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"], (
        f"error body must be {{\"message\": <non-empty string>}}, got {body!r}"
    )
    return body


def inline_table(**fields) -> str:
    """A TOML inline table; strings quoted, numbers as they are, None left out."""
    parts = []
    for k, v in fields.items():
        if v is None:
            continue
        parts.append(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}")
    return "{ " + ", ".join(parts) + " }"


def remote_model_toml(model_id: str, placement: str, *, provider: str = "Basalt", tools: bool = False,
                      price: tuple = (0.001, 0.002), extra: tuple = (), images: bool = False) -> str:
    """A catalog entry for a `remote` chat model. `placement` is its `upstream = {...}`
    or `deployments = [...]` line; `extra` lines (routing, fallbacks, ...) follow."""
    lines = [
        "[[models]]",
        f'id = "{model_id}"',
        f'name = "{model_id}"',
        f'provider = "{provider}"',
        'engine = "remote"',
        'native_body = "meta-llama"',
        'input_modalities = ["TEXT", "IMAGE"]' if images else 'input_modalities = ["TEXT"]',
        'output_modalities = ["TEXT"]',
        "streaming = true",
        f"tools = {'true' if tools else 'false'}",
        'lifecycle = { status = "ACTIVE", start_of_life = "2024-11-01T00:00:00Z" }',
        f"price = {{ input_per_1k = {price[0]}, output_per_1k = {price[1]} }}",
        placement,
        *extra,
    ]
    return "\n" + "\n".join(lines) + "\n"


def remote_embedding_toml(model_id: str, placement: str, dimensions: int, *, provider: str = "Basalt",
                          price: float = 0.0001) -> str:
    """A catalog entry for a `remote` embedding model (Titan-style native body)."""
    lines = [
        "[[models]]",
        f'id = "{model_id}"',
        f'name = "{model_id}"',
        f'provider = "{provider}"',
        'engine = "remote"',
        'native_body = "titan-embed"',
        'input_modalities = ["TEXT"]',
        'output_modalities = ["EMBEDDING"]',
        f"dimensions = {dimensions}",
        'lifecycle = { status = "ACTIVE", start_of_life = "2024-11-01T00:00:00Z" }',
        f"price = {{ input_per_1k = {price} }}",
        placement,
    ]
    return "\n" + "\n".join(lines) + "\n"


def _png_1x1() -> bytes:
    """A real 1x1 PNG (one red pixel), built with zlib."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PNG_1X1 = _png_1x1()


def image_msg(text: str, image: bytes = PNG_1X1) -> dict:
    """A user turn with text and a PNG image block."""
    return {"role": "user", "content": [{"text": text}, {"image": {"format": "png", "source": {"bytes": image}}}]}


def collect_stream(resp) -> tuple[str, str | None, dict | None]:
    """A ConverseStream answer's text, stop reason and usage."""
    text, stop, usage = "", None, None
    for event in resp["stream"]:
        if "contentBlockDelta" in event and "text" in event["contentBlockDelta"]["delta"]:
            text += event["contentBlockDelta"]["delta"]["text"]
        elif "messageStop" in event:
            stop = event["messageStop"]["stopReason"]
        elif "metadata" in event:
            usage = event["metadata"]["usage"]
    return text, stop, usage


def collect_tool_stream(resp) -> tuple[list[str], str, str | None]:
    """A streamed tool call: the tool names started, the joined input JSON, the stop reason."""
    names, fragments, stop = [], "", None
    for event in resp["stream"]:
        if "contentBlockStart" in event:
            names.append(event["contentBlockStart"]["start"]["toolUse"]["name"])
        elif "contentBlockDelta" in event and "toolUse" in event["contentBlockDelta"]["delta"]:
            fragments += event["contentBlockDelta"]["delta"]["toolUse"]["input"]
        elif "messageStop" in event:
            stop = event["messageStop"]["stopReason"]
    return names, fragments, stop
