"""Fault injection against one node (see benches/faults.sh, which starts it):

    python benches/faults.py URL TOKEN ACCESS_KEY SECRET PID DATA_DIR GARBAGE_PORT

1. disk full on the data directory: a control-plane write answers 503
   (ServiceUnavailableException) and writes nothing; inference goes on and its
   metering waits; once space returns the write succeeds and every invocation made
   meanwhile is metered exactly once;
2. an upstream that resets connections or sends garbage (a socket server in this
   script): modelled errors (no InternalServerException), streams end, the node lives;
3. clients that read streams very slowly: the node's memory stays bounded;
4. 10,000 idle connections: the node's memory stays bounded and other requests are
   served meanwhile.
Prints what it measured; exits 1 if any expectation fails.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

CHAT = "huggingfacetb.smollm2-135m-instruct-v1:0"
GARBAGE = "basalt.garbage-upstream-v1:0"
REGION = "us-east-1"
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("  ok    " if ok else "  FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def code_of(call) -> str | None:
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def disk_full(runtime, control, data_dir: str, basalt: str) -> None:
    print("1. disk full on the data directory", flush=True)
    filler = os.path.join(data_dir, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    try:
        before = len(control.list_guardrails()["guardrails"])
        create = lambda: control.create_guardrail(  # noqa: E731
            name=f"full-{time.time_ns()}", blockedInputMessaging="no", blockedOutputsMessaging="no",
            wordPolicyConfig={"wordsConfig": [{"text": "forbidden"}]})
        code = code_of(create)
        check(code == "ServiceUnavailableException", f"CreateGuardrail on a full disk answers 503 (got {code})")
        served = 0
        for _ in range(3):
            out = runtime.converse(modelId=CHAT, messages=[{"role": "user", "content": [{"text": "Hi"}]}],
                                   inferenceConfig={"maxTokens": 4})
            served += out["stopReason"] in ("end_turn", "max_tokens")
        check(served == 3, "inference goes on while the disk is full (3 of 3 served)")
    finally:
        os.remove(filler)
    time.sleep(2.5)  # the meter writes again within a second of space returning
    ok = code_of(create) is None
    check(ok, "CreateGuardrail succeeds once space returns")
    after = len(control.list_guardrails()["guardrails"])
    check(after == before + 1, f"nothing half-written: one guardrail more ({before} -> {after})")
    usage = json.loads(subprocess.run([basalt, "usage", "--since", "1h", "--json", "--data-dir", data_dir],
                                      capture_output=True, text=True, check=True).stdout)
    calls = sum(r["invocations"] for r in usage["rows"] if r["model_id"] == CHAT)
    check(calls == 3, f"the 3 calls made on a full disk are metered exactly once (found {calls})")


class Garbage:
    """An upstream that, per connection in turn: resets it (RST), answers 200 with an
    event stream of garbage and closes, or answers 200 JSON that is not JSON."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.turn = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            conn, _ = self.sock.accept()
            self.turn += 1
            threading.Thread(target=self.answer, args=(conn, self.turn % 3), daemon=True).start()

    @staticmethod
    def answer(conn: socket.socket, mode: int):
        try:
            conn.recv(65536)
            if mode == 0:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            elif mode == 1:
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
                             b"data: {\"choices\": [{\"delta\": {\"content\": 7}}]}\n\n\xff\xfe garbage \x00\n\n")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{garbage!")
        except OSError:
            pass
        finally:
            conn.close()


def bad_upstream(runtime) -> None:
    print("2. an upstream that resets connections or sends garbage", flush=True)
    codes = []
    for i in range(6):
        codes.append(code_of(lambda: runtime.converse(
            modelId=GARBAGE, messages=[{"role": "user", "content": [{"text": "Hi"}]}])))
    check(all(c is not None and c != "InternalServerException" for c in codes),
          f"Converse answers modelled errors: {sorted(set(map(str, codes)))}")
    ended = 0
    for i in range(6):
        try:
            out = runtime.converse_stream(modelId=GARBAGE, messages=[{"role": "user", "content": [{"text": "Hi"}]}])
            for _ in out["stream"]:
                pass
        except ClientError as e:
            ended += e.response["Error"]["Code"] != "InternalServerException"
        except Exception as e:  # noqa: BLE001 — an event-stream error event raises here
            ended += "InternalServer" not in repr(e)
        else:
            ended += 1
    check(ended == 6, f"ConverseStream ends with a modelled error or an end every time ({ended} of 6)")


def slow_readers(url: str, token: str, pid: int) -> None:
    print("3. clients that read streams very slowly (16 streams at ~1 KB/s)", flush=True)
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"model": CHAT, "stream": True, "max_tokens": 96,
                       "messages": [{"role": "user", "content": "Tell me a long story about a river."}]}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    before = rss_mib(pid)
    peak = [before]
    done = []

    def reader():
        s = socket.create_connection((host, int(port)))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(request)
        received = b""
        while True:
            chunk = s.recv(64)
            if not chunk:
                break
            received += chunk
            time.sleep(0.05)
        s.close()
        done.append(b"[DONE]" in received)

    threads = [threading.Thread(target=reader) for _ in range(16)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak.append(rss_mib(pid))
        time.sleep(1)
    print(f"  RSS {before:.0f} MiB before, {max(peak):.0f} MiB at most while reading, {rss_mib(pid):.0f} after")
    check(sum(done) == 16, f"every slow stream ends with [DONE] ({sum(done)} of 16)")
    check(max(peak) - before < 256, f"memory stays bounded (+{max(peak) - before:.0f} MiB)")


def idle_connections(url: str, token: str, pid: int) -> None:
    print("4. 10,000 idle connections", flush=True)
    host, port = url.removeprefix("http://").split(":")
    before = rss_mib(pid)
    sockets = []
    for _ in range(10_000):
        try:
            sockets.append(socket.create_connection((host, int(port)), timeout=5))
        except OSError as e:
            print(f"  connection {len(sockets)} refused: {e}")
            break
    opened = len(sockets)
    latencies = []
    for _ in range(20):
        started = time.monotonic()
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(f"GET /v1/models HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        s.close()
        latencies.append(time.monotonic() - started)
        if not answer.startswith(b"HTTP/1.1 200"):
            failures.append("a request beside the idle connections failed")
    peak = rss_mib(pid)
    for s in sockets:
        s.close()
    latencies.sort()
    print(f"  {opened} connections open; RSS {before:.0f} -> {peak:.0f} MiB; GET /v1/models p50 "
          f"{latencies[10] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    check(opened == 10_000, f"10,000 connections accepted ({opened})")
    check(peak - before < 512, f"memory stays bounded (+{peak - before:.0f} MiB for {opened} connections)")
    check(latencies[-1] < 5, "requests beside them are served")


def main() -> None:
    url, token, akid, secret, pid, data_dir, garbage_port, basalt = sys.argv[1:9]
    Garbage(int(garbage_port))
    cfg = Config(retries={"max_attempts": 1}, read_timeout=120)
    kw = dict(endpoint_url=url, region_name=REGION, aws_access_key_id=akid, aws_secret_access_key=secret, config=cfg)
    runtime, control = boto3.client("bedrock-runtime", **kw), boto3.client("bedrock", **kw)
    if data_dir != "-":
        disk_full(runtime, control, data_dir, basalt)
    else:
        print("1. disk full: skipped (no tmpfs could be mounted for the data directory)")
    bad_upstream(runtime)
    slow_readers(url, token, int(pid))
    idle_connections(url, token, int(pid))
    alive = subprocess.run(["kill", "-0", pid]).returncode == 0
    check(alive, "the node is alive at the end")
    print(f"{len(failures)} failed" if failures else "all expectations held")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
