"""What the Bedrock Agents tests share: the scripted upstream double, an action-group
executor double (the HTTP endpoint Basalt posts Bedrock's Lambda input event to), the
front server's configuration (remote models on the double plus `[agents]`), module
fixtures, and helpers to build agents and read InvokeAgent streams.

The front's catalog:
  - `scripted.agent-v1:0` (tools): upstream model `agent-model` on the double;
  - `scripted.no-tools-v1:0` (no tools): upstream model `no-tools-model`;
  - `scripted.embed-v1:0`: an embedding model (`embed-model`, 64 dimensions) for
    knowledge bases.
Its `[agents]`: `max_steps = 4`; executor `order-lookup` is the executor double (2 s
timeout, an `x-api-key` header from BASALT_TEST_EXECUTOR_KEY); executor `order-down`
points at a loopback port nothing listens on.

Test modules import the fixtures they use from here (pytest finds fixtures among a
module's globals, autouse ones included); module-scoped fixtures are per module.
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from basalt_support import REGION, inline_table, remote_embedding_toml, remote_model_toml
from conftest import BOTO_CONFIG, _free_port, serve_front
from double_http import DoubleServer, JsonHandler
from scripted_double import API_KEY as DOUBLE_KEY
from scripted_double import DIMENSIONS, ScriptedDouble

CHAT = "scripted.agent-v1:0"
NO_TOOLS = "scripted.no-tools-v1:0"
EMBED = "scripted.embed-v1:0"
UPSTREAM = "agent-model"
NO_TOOLS_UPSTREAM = "no-tools-model"
EMBED_UPSTREAM = "embed-model"
EMBED_ARN = f"arn:aws:bedrock:{REGION}::foundation-model/{EMBED}"

EXECUTOR = "order-lookup"
DOWN_EXECUTOR = "order-down"
UNCONFIGURED_EXECUTOR = "nobody-configured"
EXECUTOR_KEY_ENV = "BASALT_TEST_EXECUTOR_KEY"
EXECUTOR_SECRET = "executor-secret-7f3a"
DOUBLE_KEY_ENV = "BASALT_TEST_SCRIPTED_KEY"
MAX_STEPS = 4
EXECUTOR_TIMEOUT_SECS = 2

ROLE_ARN = "arn:aws:iam::000000000000:role/basalt-agent"
KB_ROLE_ARN = "arn:aws:iam::000000000000:role/basalt-kb"
TEST_ALIAS = "TSTALIASID"
RETURN_CONTROL = {"customControl": "RETURN_CONTROL"}
INSTRUCTION = "You are the order desk assistant. Use the tools to look up orders and answer briefly."

ID_RE = re.compile(r"^[0-9a-zA-Z]{10}$")

LAX_CONFIG = BOTO_CONFIG.merge(Config(parameter_validation=False))


def lambda_arn(function: str) -> str:
    return f"arn:aws:lambda:us-east-1:123456789012:function:{function}"


def fresh(prefix: str) -> str:
    """A name no other test uses (Bedrock's name pattern: letters, digits, single - or _)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def session_id() -> str:
    return "s-" + uuid.uuid4().hex


# --------------------------------------------------------------------------
# The executor double
# --------------------------------------------------------------------------


@dataclass
class Reply:
    """What the executor double answers: a status, a body (JSON-encoded unless bytes),
    after `delay` seconds."""
    body: object
    status: int = 200
    delay: float = 0.0


def lambda_reply(event: dict, body: str, session_attributes: dict | None = None,
                 prompt_session_attributes: dict | None = None, status_code: int = 200) -> dict:
    """A Bedrock Lambda response to `event`: a function's TEXT body, or an API
    operation's application/json body."""
    if "function" in event:
        response = {"actionGroup": event["actionGroup"], "function": event["function"],
                    "functionResponse": {"responseBody": {"TEXT": {"body": body}}}}
    else:
        response = {"actionGroup": event["actionGroup"], "apiPath": event["apiPath"],
                    "httpMethod": event["httpMethod"], "httpStatusCode": status_code,
                    "responseBody": {"application/json": {"body": body}}}
    out = {"messageVersion": "1.0", "response": response}
    if session_attributes is not None:
        out["sessionAttributes"] = session_attributes
    if prompt_session_attributes is not None:
        out["promptSessionAttributes"] = prompt_session_attributes
    return out


class Executor:
    """Records each POST (path, lower-cased headers, JSON body, arrival and finish times
    from time.monotonic) and answers with `answer(event) -> Reply | dict` (a dict is a
    200 JSON body); by default a Lambda response whose body is "ok"."""

    def __init__(self):
        self.calls: list[dict] = []
        self._lock = threading.Lock()
        self.answer = self.default
        executor = self

        class Handler(JsonHandler):
            def do_POST(self):
                arrived = time.monotonic()
                raw = self.read_body()
                try:
                    event = json.loads(raw)
                except ValueError:
                    event = None
                record = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": event, "raw": raw, "arrived": arrived, "finished": None}
                with executor._lock:
                    executor.calls.append(record)
                try:
                    reply = executor.answer(event)
                except Exception as e:  # the test's answer did not fit the event: record it, answer 500
                    record["answer_error"] = repr(e)
                    reply = Reply({"errorMessage": f"the executor double's answer raised {e!r}"}, status=500)
                if not isinstance(reply, Reply):
                    reply = Reply(reply)
                if reply.delay:
                    time.sleep(reply.delay)
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                except OSError:
                    pass  # Basalt gave up waiting (the timeout test)
                record["finished"] = time.monotonic()

        self.http = DoubleServer(Handler)
        self.port = self.http.port

    @staticmethod
    def default(event):
        return lambda_reply(event, "ok")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/invoke"

    def events(self) -> list[dict]:
        with self._lock:
            return [c["body"] for c in self.calls]

    def reset(self):
        with self._lock:
            self.calls.clear()
        self.answer = self.default

    def close(self):
        self.http.close()


# --------------------------------------------------------------------------
# The front server
# --------------------------------------------------------------------------


def models_toml(double: ScriptedDouble) -> str:
    def chat(model):
        return "upstream = " + inline_table(api="openai", base_url=double.base_url, model=model,
                                            api_key_env=DOUBLE_KEY_ENV, timeout_secs=30, context_window=32000)

    embed = "upstream = " + inline_table(api="openai", base_url=double.base_url, model=EMBED_UPSTREAM,
                                         api_key_env=DOUBLE_KEY_ENV, timeout_secs=30)
    # No retries: a retried upstream call would pop a second scripted step.
    no_retry = ("routing = { retries = 0 }",)
    return (remote_model_toml(CHAT, chat(UPSTREAM), tools=True, extra=no_retry)
            + remote_model_toml(NO_TOOLS, chat(NO_TOOLS_UPSTREAM), tools=False, extra=no_retry)
            + remote_embedding_toml(EMBED, embed, DIMENSIONS))


def agents_toml(executor: Executor, closed_port: int, max_steps: int = MAX_STEPS) -> str:
    return f"""
[agents]
max_steps = {max_steps}

[agents.executors.{EXECUTOR}]
url = "{executor.url}"
timeout_secs = {EXECUTOR_TIMEOUT_SECS}
headers_from_env = {{ "x-api-key" = "{EXECUTOR_KEY_ENV}" }}

[agents.executors.{DOWN_EXECUTOR}]
url = "http://127.0.0.1:{closed_port}/invoke"
timeout_secs = {EXECUTOR_TIMEOUT_SECS}
"""


def front_toml(double: ScriptedDouble, executor: Executor) -> str:
    """The front's configuration after `region = ...` (serve_front writes that line)."""
    return models_toml(double) + agents_toml(executor, _free_port())


def front_env() -> dict:
    return {DOUBLE_KEY_ENV: DOUBLE_KEY, EXECUTOR_KEY_ENV: EXECUTOR_SECRET}


def clients_for(srv, key: dict, config: Config = BOTO_CONFIG) -> SimpleNamespace:
    """bedrock-agent (`cp`) and bedrock-agent-runtime (`rt`) clients of `srv`, SigV4-signed
    with `key` (from `keys create --json`)."""
    def make(service):
        return boto3.session.Session().client(
            service, endpoint_url=srv.url, region_name=REGION, aws_access_key_id=key["access_key_id"],
            aws_secret_access_key=key["secret_access_key"], config=config)

    return SimpleNamespace(cp=make("bedrock-agent"), rt=make("bedrock-agent-runtime"), key=key)


def new_key(srv, name: str, retrieval_filter: dict | None = None) -> dict:
    args = ["keys", "create", "--name", name, "--json"]
    if retrieval_filter is not None:
        args += ["--retrieval-filter", json.dumps(retrieval_filter)]
    return srv.cli_json(*args)


@pytest.fixture(scope="module")
def double():
    d = ScriptedDouble()
    yield d
    d.close()


@pytest.fixture(scope="module")
def executor():
    e = Executor()
    yield e
    e.close()


@pytest.fixture(scope="module")
def front(double, executor, tmp_path_factory, _hermetic_client_env):
    yield from serve_front(tmp_path_factory, "agents-front", front_toml(double, executor), front_env())


@pytest.fixture(scope="module")
def admin(front):
    """Clients signed with a key without a tenant filter."""
    return clients_for(front, new_key(front, fresh("agents-admin")))


@pytest.fixture(scope="module")
def cp(admin):
    return admin.cp


@pytest.fixture(scope="module")
def rt(admin):
    return admin.rt


@pytest.fixture(scope="module")
def lax(front, admin):
    """Clients that skip botocore's own parameter validation, so a bad value reaches
    the server (which must refuse it itself)."""
    return clients_for(front, admin.key, LAX_CONFIG)


@pytest.fixture(autouse=True)
def _fresh_doubles(double, executor):
    """Every test starts with empty scripts and records; afterwards, no upstream request
    may have been refused (a body OpenAI would refuse) or have broken a scripted step,
    and no executor event may have broken the test's executor answer."""
    double.reset()
    executor.reset()
    yield
    assert not double.rejections, (
        "the OpenAI-compatible upstream refused requests Basalt sent: "
        + "; ".join(r["reason"] for r in double.rejections))
    assert not double.errors, f"scripted steps failed on the requests Basalt sent: {double.errors}"
    failed = [c["answer_error"] for c in executor.calls if "answer_error" in c]
    assert not failed, f"the executor double could not answer the events Basalt sent: {failed}"


# --------------------------------------------------------------------------
# Building agents
# --------------------------------------------------------------------------


def param(type_: str = "string", required: bool = True, description: str | None = None) -> dict:
    out = {"type": type_, "required": required}
    out["description"] = description or f"a {type_} value"
    return out


def function(name: str, description: str, **params: dict) -> dict:
    return {"name": name, "description": description, "parameters": params}


def function_group(name: str, functions: list[dict], executor: dict | None = None, description: str | None = None) -> dict:
    """CreateAgentActionGroup arguments for a function-schema group (RETURN_CONTROL by default)."""
    out = {"actionGroupName": name, "actionGroupExecutor": executor or RETURN_CONTROL,
           "functionSchema": {"functions": functions}}
    if description:
        out["description"] = description
    return out


GET_ORDER = function("get_order", "Look up an order by its id", order_id=param("string", True, "The order id"))


def orders_group(executor: dict | None = None) -> dict:
    """Action group `orders` with get_order(order_id: string, required)."""
    return function_group("orders", [GET_ORDER], executor)


def lambda_executor(name: str = EXECUTOR) -> dict:
    return {"lambda": lambda_arn(name)}


USER_INPUT_GROUP = {"actionGroupName": "userinput", "parentActionGroupSignature": "AMAZON.UserInput"}


def create_agent(cp, *, name: str | None = None, model: str = CHAT, instruction: str = INSTRUCTION,
                 **extra) -> dict:
    return cp.create_agent(agentName=name or fresh("agent"), foundationModel=model, instruction=instruction,
                           agentResourceRoleArn=ROLE_ARN, idleSessionTTLInSeconds=600, **extra)["agent"]


def wait_prepared(cp, agent_id: str, timeout: float = 30) -> dict:
    """GetAgent until the agent leaves PREPARING; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        agent = cp.get_agent(agentId=agent_id)["agent"]
        if agent["agentStatus"] != "PREPARING":
            return agent
        if time.monotonic() > deadline:
            raise AssertionError(f"agent {agent_id} still PREPARING after {timeout}s: {agent}")
        time.sleep(0.2)


def wait_alias(cp, agent_id: str, alias_id: str, timeout: float = 30) -> dict:
    """GetAgentAlias until the alias leaves CREATING / UPDATING; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        alias = cp.get_agent_alias(agentId=agent_id, agentAliasId=alias_id)["agentAlias"]
        if alias["agentAliasStatus"] not in ("CREATING", "UPDATING"):
            return alias
        if time.monotonic() > deadline:
            raise AssertionError(f"alias {alias_id} still {alias['agentAliasStatus']} after {timeout}s")
        time.sleep(0.2)


def prepare(cp, agent_id: str) -> dict:
    out = cp.prepare_agent(agentId=agent_id)
    assert out["agentId"] == agent_id and out["agentStatus"] in ("PREPARING", "PREPARED", "FAILED"), out
    return wait_prepared(cp, agent_id)


def add_groups(cp, agent_id: str, groups) -> list[dict]:
    return [cp.create_agent_action_group(agentId=agent_id, agentVersion="DRAFT", **g)["agentActionGroup"]
            for g in groups]


def ready_agent(cp, *, groups=(), kbs=(), model: str = CHAT, instruction: str = INSTRUCTION, **extra) -> str:
    """A PREPARED agent with these action groups and knowledge bases; returns its id."""
    agent = create_agent(cp, model=model, instruction=instruction, **extra)
    agent_id = agent["agentId"]
    add_groups(cp, agent_id, groups)
    for kb_id in kbs:
        cp.associate_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=kb_id,
                                          description="The team handbook: who owns which service",
                                          knowledgeBaseState="ENABLED")
    prepared = prepare(cp, agent_id)
    assert prepared["agentStatus"] == "PREPARED", (
        f"PrepareAgent did not prepare the agent: {prepared['agentStatus']} {prepared.get('failureReasons')}")
    return agent_id


def create_kb(cp, name: str | None = None) -> str:
    kb = cp.create_knowledge_base(
        name=name or fresh("kb"), roleArn=KB_ROLE_ARN,
        knowledgeBaseConfiguration={"type": "VECTOR",
                                    "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": EMBED_ARN}},
        storageConfiguration={"type": "BASALT_EMBEDDED"})["knowledgeBase"]
    assert kb["status"] == "ACTIVE", kb
    return kb["knowledgeBaseId"]


def error_of(call) -> ClientError:
    with pytest.raises(ClientError) as e:
        call()
    return e.value


def expect_error(call, code: str, status: int, message_contains: str | None = None) -> str:
    """Run `call`; expect a ClientError with this code and HTTP status; return its message."""
    err = error_of(call)
    got = (err.response["Error"].get("Code"), err.response["ResponseMetadata"].get("HTTPStatusCode"))
    assert got == (code, status), f"expected {code} / HTTP {status}, got {got}: {err.response.get('Error')}"
    message = err.response["Error"].get("Message") or ""
    assert message, f"{code} carries no message"
    if message_contains is not None:
        assert message_contains in message, f"{code} message should mention {message_contains!r}: {message!r}"
    return message


# --------------------------------------------------------------------------
# Reading InvokeAgent streams
# --------------------------------------------------------------------------


@dataclass
class Turn:
    """One InvokeAgent / InvokeInlineAgent call: the response, its events in order, and
    the exception event that ended the stream, if one did."""
    response: dict
    events: list = field(default_factory=list)
    error: EventStreamError | None = None

    def ok(self) -> "Turn":
        assert self.error is None, f"the stream ended with an exception event: {self.error.response.get('Error')}"
        return self

    @property
    def session_id(self) -> str:
        return self.response["sessionId"]

    @property
    def kinds(self) -> list[str]:
        return [next(iter(e)) for e in self.events]

    @property
    def chunks(self) -> list[dict]:
        return [e["chunk"] for e in self.events if "chunk" in e]

    @property
    def text(self) -> str:
        return "".join(c["bytes"].decode() for c in self.chunks)

    @property
    def traces(self) -> list[dict]:
        return [e["trace"] for e in self.events if "trace" in e]

    @property
    def orchestration(self) -> list[dict]:
        return [t["trace"]["orchestrationTrace"] for t in self.traces if "orchestrationTrace" in t["trace"]]

    def steps(self, kind: str) -> list[dict]:
        """The orchestration trace parts of one kind (modelInvocationInput, observation, ...), in order."""
        return [o[kind] for o in self.orchestration if kind in o]

    @property
    def return_control(self) -> dict | None:
        found = [e["returnControl"] for e in self.events if "returnControl" in e]
        assert len(found) <= 1, f"several returnControl events: {found}"
        if found:
            assert self.kinds[-1] == "returnControl", f"returnControl must end the stream: {self.kinds}"
        return found[0] if found else None


def drain(response: dict, stream_key: str = "completion") -> Turn:
    turn = Turn(response)
    try:
        for event in response[stream_key]:
            turn.events.append(event)
    except EventStreamError as e:
        turn.error = e
    return turn


def invoke(rt, agent_id: str, session: str, text: str | None = None, alias: str = TEST_ALIAS, **kwargs) -> Turn:
    args = {"agentId": agent_id, "agentAliasId": alias, "sessionId": session, **kwargs}
    if text is not None:
        args["inputText"] = text
    return drain(rt.invoke_agent(**args))


def resume_state(invocation_id: str, *results: dict, **extra) -> dict:
    return {"invocationId": invocation_id, "returnControlInvocationResults": list(results), **extra}


def function_result(action_group: str, function_name: str, body: str) -> dict:
    return {"functionResult": {"actionGroup": action_group, "function": function_name,
                               "responseBody": {"TEXT": {"body": body}}}}


def expect_stream_or_call_error(call, code: str, status: int = 400) -> str:
    """`call` fails with `code`: as an ordinary error before the stream starts (HTTP
    `status`), or as the stream's exception event (its event type: the code with a
    lower-case first letter). Returns the message."""
    try:
        response = call()
    except EventStreamError as e:  # pragma: no cover - raised while draining below
        err = e
    except ClientError as e:
        got = (e.response["Error"].get("Code"), e.response["ResponseMetadata"].get("HTTPStatusCode"))
        assert got == (code, status), f"expected {code} / HTTP {status}, got {got}: {e.response.get('Error')}"
        return e.response["Error"].get("Message") or ""
    else:
        turn = drain(response)
        assert turn.error is not None, f"expected {code}, the call succeeded with events {turn.kinds}"
        err = turn.error
    got = err.response["Error"].get("Code")
    assert got in (code, code[0].lower() + code[1:]), f"expected {code}, got {got}: {err.response.get('Error')}"
    return err.response["Error"].get("Message") or ""


# --------------------------------------------------------------------------
# Reading what the upstream received
# --------------------------------------------------------------------------


def system_text(body: dict) -> str:
    return "\n".join(m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
                     for m in body["messages"] if m["role"] in ("system", "developer"))


def tool_messages(body: dict) -> list[dict]:
    return [m for m in body["messages"] if m["role"] == "tool"]


def tool_names(body: dict) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools") or []]


def tool_schema(body: dict, name: str) -> dict:
    for t in body.get("tools") or []:
        if t["function"]["name"] == name:
            return t["function"].get("parameters") or {}
    raise AssertionError(f"the upstream request declares no tool {name!r}; tools: {tool_names(body)}")


def fill_arguments(schema: dict, values: dict):
    """Arguments for a tool whose JSON schema is `schema`, taking each property's value
    from `values` by name at whatever depth the schema puts it (an API operation's
    parameters and body properties may be flat or nested)."""
    out = {}
    for name, prop in (schema.get("properties") or {}).items():
        if name in values:
            out[name] = values[name]
        elif isinstance(prop, dict) and prop.get("type") == "object":
            nested = fill_arguments(prop, values)
            if nested:
                out[name] = nested
    return out
