"""The real AWS SDK for JavaScript v3 against the session server, over its default
request handler.

`BedrockRuntimeClient` and `BedrockAgentRuntimeClient` default to @smithy's
`NodeHttp2Handler`: HTTP/2 with prior knowledge (h2c) to an `http://` endpoint, with
the `:authority` pseudo-header signed in place of `host`. `js/sdk_calls.mjs` makes
Converse, ConverseStream, InvokeModel and CountTokens calls, and Retrieve and
RetrieveAndGenerate on a knowledge base this module creates with boto3, and prints
one JSON object with the results and a record of every HTTP/2 stream and HTTP/1
request the Node process made. The npm packages are pinned in `js/package-lock.json`
and installed by `scripts/test.sh` (`install_js_clients`: `npm ci`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from basalt_support import CHAT_MODEL, REGION
from kb_support import create_kb, folder_source, ingest

JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "sdk_calls.mjs"
PINNED = ("@aws-sdk/client-bedrock-runtime", "@aws-sdk/client-bedrock-agent-runtime")

ROCK_QUESTION_FILE = "basalt.txt"
CORPUS = {
    "basalt.txt": "Basalt is a dark volcanic rock. Columnar jointing forms when thick basalt "
                  "lava flows cool and contract into hexagonal columns.",
    "granite.md": "# Granite\n\nGranite is a coarse-grained plutonic rock made of quartz and feldspar.",
    "chalk.txt": "Chalk is a soft white limestone formed from the shells of tiny marine organisms.",
}
ALL_CALLS = ("converse", "converseStream", "invokeModel", "countTokens", "retrieve",
             "retrieveAndGenerate")


def _pinned_versions() -> dict:
    lock = json.loads((JS_DIR / "package-lock.json").read_text())
    return {name: lock["packages"][f"node_modules/{name}"]["version"] for name in PINNED}


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("`node` is not installed: scripts/test.sh installs it (install_js_clients)")
    if not all((JS_DIR / "node_modules" / name / "package.json").is_file() for name in PINNED):
        pytest.fail(f"the JS SDK is not installed: run `npm ci` in {JS_DIR} "
                    "(scripts/test.sh does, install_js_clients)")
    return path


@pytest.fixture(scope="module")
def kb_id(make_client, key, batch_root) -> str:
    """A knowledge base over a small folder of rock facts, ingested with boto3."""
    folder = batch_root / "js-sdk-kb"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in CORPUS.items():
        (folder / name).write_text(text)
    agent = make_client("bedrock-agent", key)
    kb = create_kb(agent, "js-sdk")
    ds = folder_source(agent, kb, "js-sdk-folder", folder)
    job = ingest(agent, kb, ds)
    assert job["status"] == "COMPLETE", job
    assert job["statistics"]["numberOfNewDocumentsIndexed"] == len(CORPUS), job
    return kb


def run_sdk(node, server, key, kb=None, calls=ALL_CALLS, secret=None, agent=None) -> tuple[int, dict, str]:
    """Run sdk_calls.mjs; returns (exit status, its JSON output, its stderr)."""
    env = dict(os.environ)
    env.update({
        "BASALT_ENDPOINT": server.url,
        "BASALT_ACCESS_KEY_ID": key.access_key_id,
        "BASALT_SECRET_ACCESS_KEY": secret or key.secret_access_key,
        "BASALT_MODEL_ID": CHAT_MODEL,
        "BASALT_REGION": REGION,
        "BASALT_CALLS": ",".join(calls),
        # The SDK warns on every start that releases after January 2027 need Node 22.
        "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true",
    })
    if kb is not None:
        env["BASALT_KB_ID"] = kb
    if agent is not None:
        env["BASALT_AGENT_ID"] = agent
    cp = subprocess.run([node, str(SCRIPT)], cwd=JS_DIR, env=env, capture_output=True,
                        text=True, timeout=600)
    try:
        out = json.loads(cp.stdout)
    except ValueError:
        pytest.fail(f"sdk_calls.mjs exited {cp.returncode} without JSON on stdout\n"
                    f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}")
    return cp.returncode, out, cp.stderr


@pytest.fixture(scope="module")
def sdk(node, server, key, kb_id) -> dict:
    """Every call once, with the `tests` key; all must succeed."""
    rc, out, err = run_sdk(node, server, key, kb_id)
    failed = {name: c.get("error") for name, c in out["calls"].items() if not c["ok"]}
    assert rc == 0 and out["ok"] and not failed, (
        f"sdk_calls.mjs exited {rc}; failed calls: {json.dumps(failed, indent=2)}\nstderr:\n{err}")
    assert sorted(out["calls"]) == sorted(ALL_CALLS), out["calls"]
    for name, call in out["calls"].items():
        assert call["status"] == 200, (name, call)
        assert call["requestId"], (name, call)
    return out


def test_the_pinned_sdk_ran(sdk):
    for name, version in _pinned_versions().items():
        assert sdk["sdk"][name] == version, sdk["sdk"]


def test_default_handler_is_http2_and_signs_authority(sdk, server):
    for client in ("runtime", "agentRuntime"):
        assert sdk["handlers"][client] == {"handler": "NodeHttp2Handler", "handlerProtocol": "h2"}, sdk["handlers"]
    transport = sdk["transport"]
    assert transport["http1Requests"] == [], transport
    assert transport["http2Sessions"], transport
    assert all(s.rstrip("/") == server.url for s in transport["http2Sessions"]), transport
    streams = transport["http2Streams"]
    # One HTTP/2 stream per call, each answered (a `:status` came back on the stream).
    assert len(streams) == len(ALL_CALLS), streams
    authority = server.url.removeprefix("http://")
    for s in streams:
        assert s["status"] == 200, s
        assert s["authority"] == authority and s["host"] is None, s
        assert ":authority" in s["signedHeaders"] and "host" not in s["signedHeaders"], s


def test_converse(sdk):
    c = sdk["calls"]["converse"]
    assert c["role"] == "assistant"
    assert c["text"].strip(), c
    assert c["stopReason"] in ("end_turn", "max_tokens"), c
    usage = c["usage"]
    assert usage["inputTokens"] >= 1 and usage["outputTokens"] >= 1, c
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"], c


def test_converse_stream(sdk):
    c = sdk["calls"]["converseStream"]
    assert c["events"][0] == "messageStart", c
    assert "contentBlockDelta" in c["events"], c
    assert c["lastEvents"] == ["messageStop", "metadata"], c
    assert c["text"].strip(), c
    assert c["stopReason"] in ("end_turn", "max_tokens"), c
    assert c["usage"]["inputTokens"] >= 1 and c["usage"]["outputTokens"] >= 1, c
    # Greedy decoding of the same request: the stream says what Converse said.
    conv = sdk["calls"]["converse"]
    assert (c["text"], c["stopReason"], c["usage"]) == (conv["text"], conv["stopReason"], conv["usage"])


def test_invoke_model(sdk):
    c = sdk["calls"]["invokeModel"]
    assert c["contentType"].startswith("application/json"), c
    assert c["generation"].strip(), c
    assert c["prompt_token_count"] > 0, c
    assert 1 <= c["generation_token_count"] <= 16, c
    assert c["stop_reason"] in ("stop", "length"), c


def test_count_tokens(sdk):
    n = sdk["calls"]["countTokens"]["inputTokens"]
    assert isinstance(n, int) and n > 0, n
    # The same messages as the Converse call.
    assert n == sdk["calls"]["converse"]["usage"]["inputTokens"]


def test_retrieve(sdk):
    c = sdk["calls"]["retrieve"]
    assert 1 <= c["count"] <= 3, c
    for r in c["results"]:
        assert r["text"].strip() and r["uri"], c
    assert c["results"][0]["uri"].endswith("/" + ROCK_QUESTION_FILE), c


def test_retrieve_and_generate(sdk):
    c = sdk["calls"]["retrieveAndGenerate"]
    text = c["text"]
    assert text.strip(), c
    assert c["sessionId"], c
    assert c["citations"], c
    cited = [u for cit in c["citations"] for u in cit["uris"]]
    assert any(u.endswith("/" + ROCK_QUESTION_FILE) for u in cited), c
    for cit in c["citations"]:
        part = cit["part"]
        assert text[part["span"]["start"]:part["span"]["end"]] == part["text"], cit


def test_wrong_secret_is_access_denied(node, server, key, kb_id):
    rc, out, err = run_sdk(node, server, key, kb_id, calls=("converse", "retrieve"),
                           secret="x" * len(key.secret_access_key))
    assert rc == 1 and not out["ok"], (rc, out, err)
    for name in ("converse", "retrieve"):
        error = out["calls"][name]["error"]
        assert error["name"] == "AccessDeniedException", out["calls"]
        assert error["httpStatusCode"] == 403, out["calls"]
        assert "AccessDeniedException" in err
    streams = out["transport"]["http2Streams"]
    assert [s["status"] for s in streams] == [403, 403], streams
    assert out["transport"]["http1Requests"] == [], out["transport"]


def test_invoke_agent_streams_over_http2(node, server, key, make_client):
    """InvokeAgent through the SDK's default HTTP/2 handler: the event stream parses,
    the answer is a chunk, and the session ID comes back in its header."""
    cp = make_client("bedrock-agent", key)
    agent = cp.create_agent(agentName=f"js-sdk-agent-{os.getpid()}", foundationModel=CHAT_MODEL,
                            instruction="You are a helpful assistant that answers questions in one short sentence.",
                            agentResourceRoleArn="arn:aws:iam::123456789012:role/agent",
                            promptOverrideConfiguration={"promptConfigurations": [{
                                "promptType": "ORCHESTRATION", "promptCreationMode": "DEFAULT",
                                "inferenceConfiguration": {"maximumLength": 24, "temperature": 0.0}}]})["agent"]
    prepared = cp.prepare_agent(agentId=agent["agentId"])
    assert prepared["agentStatus"] == "PREPARED", cp.get_agent(agentId=agent["agentId"])["agent"].get("failureReasons")
    rc, out, err = run_sdk(node, server, key, calls=("invokeAgent",), agent=agent["agentId"])
    call = out["calls"]["invokeAgent"]
    assert rc == 0 and call["ok"], f"{call.get('error')}\nstderr:\n{err}"
    assert call["sessionId"] == call["askedSessionId"], call
    assert call["contentType"] == "application/json", call
    assert "chunk" in call["events"] and "trace" in call["events"], call["events"]
    assert call["text"].strip(), f"an answer came back: {call}"
    assert out["transport"]["http2Streams"] and not out["transport"]["http1Requests"], out["transport"]
