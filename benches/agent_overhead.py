"""Agent overhead, side by side in one run: time per agent step minus model and tool
time, for the same 3-tool task run by

  (a) Basalt's InvokeAgent (boto3 `bedrock-agent-runtime`; the tools run on Basalt's
      HTTP executor, a Bedrock Lambda endpoint answered by this process), and the same
      turn sent as one plain HTTP request with a bearer key (no boto3 on the client:
      the server side's figure);
  (b) Strands Agents driving Basalt's ConverseStream (BedrockModel on Basalt's
      endpoint; the tools are Python functions);
  (c) LangGraph's prebuilt ReAct agent with ChatOpenAI against the same upstream
      (stateless, and with an InMemorySaver checkpointer and a thread per turn).

One scripted upstream (tests/clients/scripted_double.py) answers every chat request
at once: while the conversation holds fewer than three tool results it calls the next
of `lookup_a`, `lookup_b`, `lookup_c` (the tool whose name ends so: Basalt's model sees
`tools__lookup_a`), then it answers "done". One turn is 4 model calls and 3 tool calls.

Model time is the double's own time per request: from the request's arrival (the
kernel's receive timestamp of its first byte, or the accept of its connection if that
came first, so the Python server's thread start, wake-up and read of the request line
are the double's time, not the framework's) to the handler's return. The "late"
figures measure as this script did before 2026-12-06: a kept-alive request from the
handler's parsing of its request line. Tool time is the executor double's handler time for Basalt, the
Python function's own time for the others. Per-step overhead of a turn:
(client-seen wall time - sum of model times - sum of tool times) / 4.

Then (IDLE_SESSIONS, default 10000; 0 skips) as many Basalt sessions are opened, one
InvokeAgent each answered with text at once, and Basalt's RSS before and after and the
session records in its store (SQLite) are reported.

Environment: BASALT_BIN (the binary), TURNS (measured turns per framework, default
200), WARMUP (default 20), ROUNDS (the measured turns run in this many rounds, the
frameworks alternating, default 4), FRAMEWORKS (comma list of basalt, basalt-raw,
strands, langgraph, langgraph-saver; default all), IDLE_SESSIONS, KEEP_WORK=1 (keep the
server's data and log).
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "clients"))

from double_http import DoubleServer, JsonHandler  # noqa: E402
from scripted_double import API_KEY as DOUBLE_KEY  # noqa: E402
from scripted_double import ScriptedDouble, message_text  # noqa: E402

REGION = "us-east-1"
MODEL_ID = "bench.agent-v1:0"  # Basalt's catalog entry: a remote model on the double
UPSTREAM = "agent-model"  # the double's model name
DOUBLE_KEY_ENV = "BASALT_BENCH_UPSTREAM_KEY"
EXECUTOR_NAME = "bench-tools"
ACTION_GROUP = "tools"
ROLE_ARN = "arn:aws:iam::000000000000:role/basalt-agent"
TEST_ALIAS = "TSTALIASID"
INSTRUCTION = ("You are a lookup assistant. Use lookup_a, lookup_b and lookup_c, one after the other, "
               "then answer briefly.")
PROMPT = "Look up a, then b, then c, and tell me when you are done."
IDLE_MARK = "[idle]"
TOOLS = ("lookup_a", "lookup_b", "lookup_c")
STEPS = len(TOOLS) + 1  # model calls per turn
FINAL = "done"

TURNS = int(os.environ.get("TURNS", "200"))
WARMUP = int(os.environ.get("WARMUP", "20"))
ROUNDS = max(1, int(os.environ.get("ROUNDS", "4")))
IDLE_SESSIONS = int(os.environ.get("IDLE_SESSIONS", "10000"))
ALL = ("basalt", "basalt-raw", "strands", "langgraph", "langgraph-saver")
FRAMEWORKS = [f.strip() for f in os.environ.get("FRAMEWORKS", ",".join(ALL)).split(",") if f.strip()]
for _f in FRAMEWORKS:
    if _f not in ALL:
        sys.exit(f"unknown framework {_f!r} in FRAMEWORKS (known: {', '.join(ALL)})")

PEER_NAMES = {"strands": "Strands", "langgraph": "LangGraph", "langgraph-saver": "LangGraph + InMemorySaver"}
LABELS = {
    "basalt": "(a) Basalt InvokeAgent (boto3)",
    "basalt-raw": "(a') Basalt InvokeAgent (raw HTTP)",
    "strands": "(b) Strands -> Basalt ConverseStream",
    "langgraph": "(c) LangGraph ReAct + ChatOpenAI",
    "langgraph-saver": "(c') same + InMemorySaver, thread/turn",
}


def hermetic_env() -> None:
    """Keep the developer's AWS / OpenAI / proxy settings out of the clients."""
    for var in ("AWS_BEARER_TOKEN_BEDROCK", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK",
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_REGION",
                "AWS_DEFAULT_REGION", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        os.environ.pop(var, None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    # Strands and LangChain telemetry stay off (no exporter is configured anyway).
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    os.environ.setdefault("LANGCHAIN_TRACING_V2", "false")
    os.environ.setdefault("LANGSMITH_TRACING", "false")


# --------------------------------------------------------------------------
# Timing of the doubles
# --------------------------------------------------------------------------


class Recorder:
    """Durations of handled requests (or tool calls), in order. `started` counts the
    ones begun, so a turn can wait for the last handler to return (a client may see
    the answer before the handler's own bookkeeping ends). `late` holds each duration
    as this script measured it before 2026-12-06: from the Python handler's parsing of
    the request line rather than from the request's arrival."""

    def __init__(self):
        self._lock = threading.Lock()
        self.started = 0
        self.times: list[float] = []
        self.late: list[float] = []

    def begin(self) -> None:
        with self._lock:
            self.started += 1

    def end(self, seconds: float, late: float | None = None) -> None:
        with self._lock:
            self.times.append(seconds)
            self.late.append(seconds if late is None else late)

    def mark(self) -> int:
        with self._lock:
            return len(self.times)

    def settle(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.times) >= self.started:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("a double's handler did not return")
            time.sleep(0.0002)

    def since(self, mark: int) -> list[float]:
        with self._lock:
            return self.times[mark:]

    def late_since(self, mark: int) -> list[float]:
        with self._lock:
            return self.late[mark:]

    def clear(self) -> None:
        self.settle()
        with self._lock:
            self.started = 0
            self.times.clear()
            self.late.clear()


# The kernel's receive timestamp of a socket's data (Linux: SO_TIMESTAMPNS, CLOCK_REALTIME).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def arrival_stamp(sock: socket.socket) -> float | None:
    """Waits for the next request's first byte on `sock` without reading it, and
    answers when the kernel received it (seconds, `time.time()`'s clock), or None.
    The clients here never pipeline, so no request waits unread in the handler's
    buffer while this blocks."""
    try:
        data, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK)
    except OSError:
        return None
    for level, kind, payload in ancillary:
        if data and level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            seconds, nanos = struct.unpack("qq", payload[:16])
            return seconds + nanos / 1e9
    return None


def time_handlers(server: DoubleServer, recorder: Recorder) -> None:
    """Times every POST `server` handles, from the request's arrival to do_POST's
    return, and sets TCP_NODELAY on its connections. Arrival: the kernel's receive
    timestamp of the request's first byte, or for the first request on a connection
    the accept of the connection if that came first (so the Python thread started for
    a connection, its wake-up and its read of the request line are the double's time,
    as they would be an upstream's). The late figure (this script's measure before
    2026-12-06) starts a connection's first request at its accept and a kept-alive
    request at the parsing of its request line."""
    srv = server.server
    accepted: dict = {}
    process_request = srv.process_request

    def stamped(request, client_address):
        # In the accepting thread, before the handler's thread starts; both clocks.
        accepted[request] = (time.perf_counter(), time.time())
        process_request(request, client_address)

    srv.process_request = stamped
    base = srv.RequestHandlerClass

    class Timed(base):
        # The handlers write headers and body in two sends: with Nagle's algorithm on,
        # the body would wait for the client's delayed ACK (~40 ms on Linux), a delay
        # no real upstream has and no handler timer sees.
        disable_nagle_algorithm = True

        def setup(self):
            super().setup()
            self._accepted = accepted.pop(self.request, None)  # until the first request is answered
            self._stamps = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                self._stamps = False
            self._arrived = None

        def handle_one_request(self):
            self._arrived = arrival_stamp(self.connection) if self._stamps else None
            super().handle_one_request()

        def parse_request(self):
            self._line = time.perf_counter()
            return super().parse_request()

        def do_POST(self):
            recorder.begin()
            try:
                super().do_POST()
            finally:
                now, wall = time.perf_counter(), time.time()
                first, self._accepted = self._accepted, None
                late = now - (first[0] if first else self._line)
                starts = [t for t in (self._arrived, first[1] if first else None) if t is not None]
                recorder.end(max(wall - min(starts), late) if starts else late, late)

    srv.RequestHandlerClass = Timed


def instant_step(body: dict) -> dict:
    """The upstream's one rule. Every conversation is one fresh session's single turn,
    so the tool results it holds are this turn's."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    first_user = next((message_text(m) for m in messages if m.get("role") == "user"), "")
    if IDLE_MARK in first_user:
        return {"text": "hello"}
    done = sum(1 for m in messages if m.get("role") == "tool")
    if done >= len(TOOLS):
        return {"text": FINAL}
    want = TOOLS[done]
    names = [(t.get("function") or {}).get("name", "") for t in body.get("tools") or [] if isinstance(t, dict)]
    name = next((n for n in names if n == want or n.endswith("__" + want)), None)
    if name is None:
        raise ValueError(f"no tool named like {want} among {names}")
    return {"tool_calls": [{"name": name, "arguments": {"q": f"item {want[-1]}"}}]}


class BenchDouble(ScriptedDouble):
    """The scripted double, every request answered by `instant_step` (no queue to pop),
    its handler time recorded."""

    def __init__(self):
        super().__init__()
        self.timing = Recorder()
        time_handlers(self.http, self.timing)

    def _next_step(self, body: dict) -> dict:
        return instant_step(body)

    def trim(self) -> None:
        """Drops the double's request records (they grow with every request)."""
        with self._lock:
            self.requests.clear()
            self.answers.clear()
            self.log.clear()
            self.embedding_requests.clear()

    def check(self) -> None:
        if self.rejections or self.errors:
            raise RuntimeError(f"the upstream double refused or failed requests: "
                               f"{[r['reason'] for r in self.rejections][:3]} {self.errors[:3]}")


class LambdaExecutor:
    """Basalt's HTTP executor for the Lambda ARN: answers each Bedrock Lambda event
    with a function response at once, its handler time recorded."""

    def __init__(self):
        self.timing = Recorder()
        self.failures: list[str] = []
        executor = self

        class Handler(JsonHandler):
            def do_POST(self):
                try:
                    event = json.loads(self.read_body())
                    body = json.dumps({"messageVersion": "1.0", "response": {
                        "actionGroup": event["actionGroup"], "function": event["function"],
                        "functionResponse": {"responseBody": {"TEXT": {"body": f"result of {event['function']}"}}}}})
                    self.send_response(200)
                except Exception as e:  # noqa: BLE001 - reported after the run
                    executor.failures.append(repr(e))
                    body = json.dumps({"errorMessage": repr(e)})
                    self.send_response(500)
                data = body.encode()
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

        self.http = DoubleServer(Handler)
        time_handlers(self.http, self.timing)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}/invoke"

    def close(self):
        self.http.close()


# --------------------------------------------------------------------------
# Basalt
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basalt_toml(double: BenchDouble, executor: LambdaExecutor) -> str:
    return f"""region = "{REGION}"

[[models]]
id = "{MODEL_ID}"
name = "instant scripted upstream"
provider = "Basalt"
engine = "remote"
native_body = "meta-llama"
input_modalities = ["TEXT"]
output_modalities = ["TEXT"]
streaming = true
tools = true
lifecycle = {{ status = "ACTIVE", start_of_life = "2024-11-01T00:00:00Z" }}
price = {{ input_per_1k = 0.001, output_per_1k = 0.002 }}
upstream = {{ api = "openai", base_url = "{double.base_url}", model = "{UPSTREAM}", api_key_env = "{DOUBLE_KEY_ENV}", timeout_secs = 30, context_window = 32000 }}
routing = {{ retries = 0 }}

[agents]
max_steps = 10

[agents.executors.{EXECUTOR_NAME}]
url = "{executor.url}"
timeout_secs = 10
"""


class Basalt:
    def __init__(self, binary: str, work: Path, config: str):
        self.binary = binary
        self.data = work / "data"
        self.data.mkdir(parents=True)
        (work / "basalt.toml").write_text(config)
        self.port = free_port()
        self.env = dict(os.environ, **{DOUBLE_KEY_ENV: DOUBLE_KEY})
        self.log_path = work / "basalt.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data),
                 "--config", str(work / "basalt.toml")],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"basalt serve exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"basalt serve did not answer /health:\n{self.tail()}")
            time.sleep(0.2)
        out = subprocess.run([binary, "keys", "create", "--name", "bench", "--json", "--data-dir", str(self.data)],
                             env=self.env, capture_output=True, text=True, check=True)
        self.key = json.loads(out.stdout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def session_rows(self) -> int:
        db = sqlite3.connect(f"file:{self.data / 'basalt.db'}?mode=ro", uri=True, timeout=30)
        try:
            return db.execute("SELECT count(*) FROM agent_records WHERE kind = 'session'").fetchone()[0]
        finally:
            db.close()

    def db_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.data.glob("basalt.db*"))

    def boto(self, service: str):
        import boto3
        from botocore.config import Config
        return boto3.session.Session().client(
            service, endpoint_url=self.url, region_name=REGION, aws_access_key_id=self.key["access_key_id"],
            aws_secret_access_key=self.key["secret_access_key"],
            config=Config(retries={"total_max_attempts": 1}, read_timeout=60, connect_timeout=10))

    def stop(self) -> int | None:
        crashed = self.proc.poll()
        if crashed is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return crashed


def create_agent(basalt: Basalt) -> str:
    cp = basalt.boto("bedrock-agent")
    agent = cp.create_agent(agentName="bench-agent", foundationModel=MODEL_ID, instruction=INSTRUCTION,
                            agentResourceRoleArn=ROLE_ARN, idleSessionTTLInSeconds=3600)["agent"]
    agent_id = agent["agentId"]
    functions = [{"name": name, "description": f"Look up item {name[-1]}.",
                  "parameters": {"q": {"type": "string", "required": True, "description": "what to look up"}}}
                 for name in TOOLS]
    cp.create_agent_action_group(
        agentId=agent_id, agentVersion="DRAFT", actionGroupName=ACTION_GROUP,
        actionGroupExecutor={"lambda": f"arn:aws:lambda:{REGION}:123456789012:function:{EXECUTOR_NAME}"},
        functionSchema={"functions": functions})
    cp.prepare_agent(agentId=agent_id)
    deadline = time.monotonic() + 30
    while True:
        got = cp.get_agent(agentId=agent_id)["agent"]
        if got["agentStatus"] == "PREPARED":
            return agent_id
        if got["agentStatus"] != "PREPARING" or time.monotonic() > deadline:
            raise RuntimeError(f"the agent was not prepared: {got['agentStatus']} {got.get('failureReasons')}")
        time.sleep(0.1)


class RawInvoke:
    """InvokeAgent as one plain HTTP/1.1 request on a kept-alive connection, with the
    key's bearer token: what the turn costs without boto3's signing and parsing."""

    def __init__(self, basalt: Basalt, agent_id: str):
        from botocore.eventstream import EventStreamBuffer
        self._buffer = EventStreamBuffer
        self.port = basalt.port
        self.token = basalt.key["bearer_token"]
        self.agent_id = agent_id
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def __call__(self, text: str) -> str:
        path = f"/agents/{self.agent_id}/agentAliases/{TEST_ALIAS}/sessions/s-{uuid.uuid4().hex}/text"
        body = json.dumps({"inputText": text}).encode()
        headers = {"authorization": f"Bearer {self.token}", "content-type": "application/json"}
        try:
            self.conn.request("POST", path, body=body, headers=headers)
            resp = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.request("POST", path, body=body, headers=headers)
            resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"InvokeAgent answered HTTP {resp.status}: {data[:300]!r}")
        buf = self._buffer()
        buf.add_data(data)
        out = []
        for message in buf:
            kind = message.headers.get(":message-type")
            if kind != "event":
                raise RuntimeError(f"InvokeAgent stream carried {kind}: {message.headers} {message.payload[:300]!r}")
            if message.headers.get(":event-type") == "chunk":
                chunk = json.loads(message.payload)
                out.append(base64.b64decode(chunk.get("bytes", "")).decode())
        return "".join(out)


# --------------------------------------------------------------------------
# The frameworks' turns
# --------------------------------------------------------------------------

PY_TOOLS = Recorder()  # the Python tools' own time (Strands, LangGraph)


def py_tool(name: str, q: str) -> str:
    PY_TOOLS.begin()
    t0 = time.perf_counter()
    out = f"result of {name} for {q}"
    PY_TOOLS.end(time.perf_counter() - t0)
    return out


def basalt_turn(basalt: Basalt, agent_id: str):
    rt = basalt.boto("bedrock-agent-runtime")

    def turn() -> str:
        resp = rt.invoke_agent(agentId=agent_id, agentAliasId=TEST_ALIAS, sessionId=f"s-{uuid.uuid4().hex}",
                               inputText=PROMPT)
        return "".join(e["chunk"]["bytes"].decode() for e in resp["completion"] if "chunk" in e)

    return turn


def basalt_raw_turn(basalt: Basalt, agent_id: str):
    raw = RawInvoke(basalt, agent_id)
    return lambda: raw(PROMPT)


def strands_turn(basalt: Basalt):
    import boto3
    from botocore.config import Config
    from strands import Agent, tool
    from strands.models.bedrock import BedrockModel

    @tool
    def lookup_a(q: str) -> str:
        """Look up item a.

        Args:
            q: what to look up
        """
        return py_tool("lookup_a", q)

    @tool
    def lookup_b(q: str) -> str:
        """Look up item b.

        Args:
            q: what to look up
        """
        return py_tool("lookup_b", q)

    @tool
    def lookup_c(q: str) -> str:
        """Look up item c.

        Args:
            q: what to look up
        """
        return py_tool("lookup_c", q)

    session = boto3.Session(aws_access_key_id=basalt.key["access_key_id"],
                            aws_secret_access_key=basalt.key["secret_access_key"], region_name=REGION)
    model = BedrockModel(model_id=MODEL_ID, boto_session=session, endpoint_url=basalt.url,
                         boto_client_config=Config(retries={"total_max_attempts": 1}, read_timeout=60))
    agent = Agent(model=model, tools=[lookup_a, lookup_b, lookup_c], system_prompt=INSTRUCTION,
                  callback_handler=None)

    def turn() -> str:
        agent.messages.clear()  # a fresh conversation; the Agent object is kept (generous to Strands)
        return str(agent(PROMPT)).strip()

    return turn


def langgraph_turn(double: BenchDouble, checkpointer: bool):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent

    @tool
    def lookup_a(q: str) -> str:
        """Look up item a."""
        return py_tool("lookup_a", q)

    @tool
    def lookup_b(q: str) -> str:
        """Look up item b."""
        return py_tool("lookup_b", q)

    @tool
    def lookup_c(q: str) -> str:
        """Look up item c."""
        return py_tool("lookup_c", q)

    llm = ChatOpenAI(base_url=double.base_url, api_key=DOUBLE_KEY, model=UPSTREAM, max_retries=0, timeout=60)
    saver = None
    if checkpointer:
        from langgraph.checkpoint.memory import InMemorySaver
        saver = InMemorySaver()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = create_react_agent(llm, tools=[lookup_a, lookup_b, lookup_c], prompt=INSTRUCTION,
                                   checkpointer=saver)

    def turn() -> str:
        config = {"configurable": {"thread_id": uuid.uuid4().hex}} if checkpointer else None
        out = graph.invoke({"messages": [("user", PROMPT)]}, config=config)
        return str(out["messages"][-1].content).strip()

    return turn


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Series:
    def __init__(self):
        self.wall: list[float] = []
        self.step_overhead: list[float] = []
        self.step_overhead_late: list[float] = []  # model and tool times as measured before 2026-12-06
        self.model_calls: list[float] = []
        self.tool_calls: list[float] = []


def run_turns(name: str, turn, n: int, double: BenchDouble, tools: Recorder, series: Series | None) -> None:
    for _ in range(n):
        m0 = double.timing.mark()
        t0 = tools.mark()
        start = time.perf_counter()
        answer = turn()
        wall = time.perf_counter() - start
        double.timing.settle()
        tools.settle()
        model = double.timing.since(m0)
        tool = tools.since(t0)
        model_late = double.timing.late_since(m0)
        tool_late = tools.late_since(t0)
        if answer != FINAL or len(model) != STEPS or len(tool) != len(TOOLS):
            raise RuntimeError(f"{name}: the turn was not the scripted one: answer {answer!r}, "
                               f"{len(model)} model calls (want {STEPS}), {len(tool)} tool calls (want {len(TOOLS)})")
        if series is not None:
            series.wall.append(wall)
            series.step_overhead.append((wall - sum(model) - sum(tool)) / STEPS)
            series.step_overhead_late.append((wall - sum(model_late) - sum(tool_late)) / STEPS)
            series.model_calls.extend(model)
            series.tool_calls.extend(tool)
    double.check()
    double.trim()


def ms(x: float) -> str:
    return f"{x * 1000:.3f}"


def main() -> int:
    hermetic_env()
    binary = os.environ.get("BASALT_BIN") or str(Path.home() / ".cache/basalt/target/release/basalt")
    if not Path(binary).is_file():
        print(f"no basalt binary at {binary} (set BASALT_BIN)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="basalt-agents-bench-"))
    double = BenchDouble()
    executor = LambdaExecutor()
    basalt = None
    try:
        basalt = Basalt(binary, work, basalt_toml(double, executor))
        agent_id = create_agent(basalt)
        turns, tool_recorders = {}, {}
        for name in FRAMEWORKS:
            if name == "basalt":
                turns[name] = basalt_turn(basalt, agent_id)
            elif name == "basalt-raw":
                turns[name] = basalt_raw_turn(basalt, agent_id)
            elif name == "strands":
                turns[name] = strands_turn(basalt)
            elif name == "langgraph":
                turns[name] = langgraph_turn(double, checkpointer=False)
            elif name == "langgraph-saver":
                turns[name] = langgraph_turn(double, checkpointer=True)
            tool_recorders[name] = executor.timing if name.startswith("basalt") else PY_TOOLS

        versions = {}
        for pkg in ("strands-agents", "langgraph", "langgraph-prebuilt", "langchain-openai", "langchain-core",
                    "boto3", "openai"):
            try:
                versions[pkg] = version(pkg)
            except Exception:  # noqa: BLE001
                versions[pkg] = "?"
        print(f"basalt: {binary}; python {sys.version.split()[0]}; "
              + ", ".join(f"{k} {v}" for k, v in versions.items()))
        print(f"turn = {STEPS} model calls + {len(TOOLS)} tool calls; warm-up {WARMUP} turns each, then {TURNS} "
              f"turns each in {ROUNDS} alternating rounds; every turn a fresh session", flush=True)

        for name in FRAMEWORKS:
            run_turns(name, turns[name], WARMUP, double, tool_recorders[name], None)
        series = {name: Series() for name in FRAMEWORKS}
        per_round = [TURNS // ROUNDS + (1 if r < TURNS % ROUNDS else 0) for r in range(ROUNDS)]
        for r, n in enumerate(per_round):
            for name in FRAMEWORKS:
                run_turns(name, turns[name], n, double, tool_recorders[name], series[name])
        if executor.failures:
            raise RuntimeError(f"the executor double failed: {executor.failures[:3]}")

        print()
        head = (f"{'framework':<40} {'turn p50':>9} {'turn p99':>9} {'model/call':>10} {'tool/call':>9} "
                f"{'step ovh p50':>12} {'step ovh p99':>12} {'x basalt':>8} {'late p50':>9}")
        print(head)
        print("-" * len(head))
        base = pct(series["basalt"].step_overhead, 0.5) if "basalt" in series else None
        for name in FRAMEWORKS:
            s = series[name]
            o50 = pct(s.step_overhead, 0.5)
            ratio = f"{o50 / base:.1f}x" if base else "-"
            print(f"{LABELS[name]:<40} {ms(pct(s.wall, 0.5)):>9} {ms(pct(s.wall, 0.99)):>9} "
                  f"{ms(pct(s.model_calls, 0.5)):>10} {ms(pct(s.tool_calls, 0.5)):>9} "
                  f"{ms(o50):>12} {ms(pct(s.step_overhead, 0.99)):>12} {ratio:>8} "
                  f"{ms(pct(s.step_overhead_late, 0.5)):>9}")
        print("(milliseconds; model/call and tool/call: p50 of the doubles' / tools' own time from a request's "
              "arrival, subtracted; step ovh = (turn - model - tools) / 4; late p50: the same with the doubles' "
              "time of a kept-alive request taken from their parsing of its request line, as measured before "
              "2026-12-06)")
        peers = [n for n in ("strands", "langgraph", "langgraph-saver") if n in series]
        if base is not None:
            ok1 = base <= 0.001
            print(f"goal: Basalt per-step overhead p50 {ms(base)} ms <= 1 ms: {'yes' if ok1 else 'NO'}")
            if peers:
                fastest = min(peers, key=lambda n: pct(series[n].step_overhead, 0.5))
                f50 = pct(series[fastest].step_overhead, 0.5)
                ratio = f50 / base
                print(f"goal: >= 10x lower than the faster peer ({PEER_NAMES[fastest]}, {ms(f50)} ms): "
                      f"{ratio:.1f}x: {'yes' if ratio >= 10 else 'NO'}")
                late = pct(series[fastest].step_overhead_late, 0.5) / pct(series["basalt"].step_overhead_late, 0.5)
                print(f"      (measured as before 2026-12-06, doubles' time from the request line: {late:.1f}x)")
        if "strands" in series:
            print("note: Strands' figure includes Basalt's ConverseStream hop (Strands -> Basalt -> upstream).")

        if IDLE_SESSIONS > 0:
            raw = RawInvoke(basalt, agent_id)
            rss0, rows0 = basalt.rss_kib(), basalt.session_rows()
            t0 = time.perf_counter()
            for i in range(IDLE_SESSIONS):
                answer = raw(f"{IDLE_MARK} hello")
                if answer != "hello":
                    raise RuntimeError(f"idle session {i}: answer {answer!r}")
                if i % 1000 == 999:
                    double.check()
                    double.trim()
                    double.timing.clear()
            took = time.perf_counter() - t0
            time.sleep(1)
            rss1, rows1 = basalt.rss_kib(), basalt.session_rows()
            print()
            print(f"idle sessions: opened {IDLE_SESSIONS} (one InvokeAgent each, text answer) in {took:.1f} s "
                  f"({IDLE_SESSIONS / took:.0f}/s, raw HTTP client)")
            print(f"  Basalt RSS before {rss0 / 1024:.1f} MiB, after {rss1 / 1024:.1f} MiB "
                  f"({(rss1 - rss0) / 1024:+.1f} MiB)")
            print(f"  session records in the store (SQLite, agent_records kind='session'): {rows0} before, "
                  f"{rows1} after; database {basalt.db_bytes() / 2**20:.1f} MiB")
            print("  sessions are held in the store, not in the server's memory: a turn loads its session "
                  "from SQLite and writes it back when it ends")
        crashed = basalt.stop()
        if crashed is not None:
            raise RuntimeError(f"basalt exited during the run ({crashed}):\n{basalt.tail()}")
        return 0
    except Exception:
        if basalt is not None:
            print(f"--- basalt log tail ---\n{basalt.tail()}", file=sys.stderr)
        raise
    finally:
        if basalt is not None:
            basalt.stop()
        double.close()
        executor.close()
        if os.environ.get("KEEP_WORK") == "1":
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
