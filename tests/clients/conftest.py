"""Fixtures for the Basalt client acceptance tests.

The suite starts one real Basalt server for the whole session and talks to it
with the real clients users use: boto3 (bedrock-runtime and bedrock, SigV4 and
bearer auth), the OpenAI Python SDK, and plain HTTP for malformed requests.

Environment:
  BASALT_BIN          path of the basalt binary (falls back to target/release/basalt,
                      then target/debug/basalt)
  BASALT_MODELS_DIR   directory with the fetched models (falls back to <repo>/models)
  BASALT_TEST_CONFIG  server config (default tests/fixtures/basalt-test.toml)
  BASALT_TEST_STARTUP_TIMEOUT  seconds to wait for /health (default 120)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import openai
import pytest
from botocore.config import Config

from basalt_support import (
    CHAT_MODEL,
    REGION,
    RawResponse,
    converse_text,
    http_request,
    model_path,
    user_msg,
)

REPO = Path(__file__).resolve().parents[2]
TEST_CONFIG = Path(
    os.environ.get("BASALT_TEST_CONFIG") or REPO / "tests" / "fixtures" / "basalt-test.toml"
)

# Set once the server is up; used to attach the server log to failed tests.
_SERVER_LOG: Path | None = None


def _tail(path: Path | None, lines: int = 60) -> str:
    if path is None or not path.exists():
        return "(no server log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _SERVER_LOG is not None:
        report.sections.append(
            ("basalt server log (tail)", f"{_SERVER_LOG}\n{_tail(_SERVER_LOG)}")
        )


# --------------------------------------------------------------------------
# Hermetic client environment
# --------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _hermetic_client_env(tmp_path_factory):
    """Keep the developer's AWS/OpenAI/proxy settings out of the tests."""
    mp = pytest.MonkeyPatch()
    nowhere = tmp_path_factory.mktemp("no-aws-config") / "absent"
    for var in (
        "AWS_BEARER_TOKEN_BEDROCK",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_AUTH_SCHEME_PREFERENCE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_BEDROCK",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
    ):
        mp.delenv(var, raising=False)
    mp.setenv("AWS_CONFIG_FILE", str(nowhere))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    mp.setenv("NO_PROXY", "127.0.0.1,localhost")
    mp.setenv("no_proxy", "127.0.0.1,localhost")
    yield
    mp.undo()


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


@dataclass
class Server:
    bin: Path
    port: int
    data_dir: Path
    log_path: Path
    env: dict
    proc: subprocess.Popen
    tls_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `basalt <args> --data-dir <data>`; with check, fail on non-zero exit."""
        cmd = [str(self.bin), *args, "--data-dir", str(self.data_dir)]
        cp = subprocess.run(
            cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )
        if check and cp.returncode != 0:
            pytest.fail(
                f"`{' '.join(cmd)}` exited {cp.returncode}\n"
                f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}"
            )
        return cp

    def cli_json(self, *args: str):
        cp = self.cli(*args)
        try:
            return json.loads(cp.stdout)
        except ValueError:
            pytest.fail(
                f"`basalt {' '.join(args)}` did not print JSON on stdout:\n"
                f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}"
            )


@dataclass(frozen=True)
class Key:
    id: str
    name: str
    access_key_id: str
    secret_access_key: str
    bearer_token: str


def _find_binary() -> Path:
    env = os.environ.get("BASALT_BIN")
    if env:
        p = Path(env)
        if not p.is_file():
            pytest.fail(f"BASALT_BIN={env} does not exist")
        return p
    for cand in (REPO / "target" / "release" / "basalt", REPO / "target" / "debug" / "basalt"):
        if cand.is_file():
            return cand
    pytest.fail("BASALT_BIN is not set and no target/{release,debug}/basalt exists")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def start_server(config: Path, base: Path, extra_env: dict | None = None, tls: bool = False) -> Server:
    """Start `basalt serve` with `config` on a free port (data and log under `base`)
    and wait until GET /health answers 200; fail the test with the log otherwise."""
    binary = _find_binary()
    if not config.is_file():
        pytest.fail(f"server config {config} is missing")
    models_dir = os.environ.get("BASALT_MODELS_DIR") or str(REPO / "models")
    data_dir = base / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = base / "server.log"
    port = _free_port()

    env = dict(os.environ)
    env["BASALT_MODELS_DIR"] = models_dir
    env.setdefault("RUST_BACKTRACE", "1")
    env.update(extra_env or {})

    cmd = [
        str(binary), "serve",
        "--listen", f"127.0.0.1:{port}",
        "--data-dir", str(data_dir),
        "--config", str(config),
    ]
    tls_port = None
    if tls:
        # An HTTPS listener beside the plain one, with a self-signed certificate.
        tls_port = _free_port()
        cmd += ["--tls-listen", f"127.0.0.1:{tls_port}", "--tls", "self-signed"]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    srv = Server(binary, port, data_dir, log_path, env, proc, tls_port)

    timeout = float(os.environ.get("BASALT_TEST_STARTUP_TIMEOUT", "120"))
    deadline = time.monotonic() + timeout
    last_err = "no attempt"
    while True:
        if proc.poll() is not None:
            pytest.fail(
                f"basalt serve exited with code {proc.returncode} during startup\n"
                f"command: {' '.join(cmd)}\n--- server log tail ---\n{_tail(log_path)}"
            )
        try:
            r = http_request(port, "GET", "/health", timeout=5)
            if r.status == 200:
                return srv
            last_err = f"HTTP {r.status}: {r.body[:200]!r}"
        except OSError as e:
            last_err = repr(e)
        if time.monotonic() > deadline:
            stop_server(srv)
            pytest.fail(
                f"basalt serve did not answer GET /health with 200 within {timeout:.0f}s "
                f"(last: {last_err})\ncommand: {' '.join(cmd)}\n"
                f"--- server log tail ---\n{_tail(log_path)}"
            )
        time.sleep(0.25)


def stop_server(srv: Server) -> int | None:
    """Stop the server; returns its exit code if it had already exited (crashed)."""
    crashed = srv.proc.poll()
    _stop(srv.proc)
    return crashed


def serve_front(tmp_path_factory, name: str, models_toml: str, env: dict):
    """For a module fixture (`yield from`): a second server whose catalog is
    `models_toml` (remote models), started with `env`, stopped after the module, and
    failing the module if it crashed meanwhile."""
    base = tmp_path_factory.mktemp(name)
    path = base / "front.toml"
    path.write_text('region = "us-east-1"\n' + models_toml)
    srv = start_server(path, base, env)
    yield srv
    crashed = stop_server(srv)
    assert crashed is None, f"the front server crashed:\n{_tail(srv.log_path)}"


def runtime_for(srv, key: dict):
    """A bedrock-runtime client for `srv`, SigV4-signed with `key` (from `keys create --json`)."""
    return boto3.session.Session().client(
        "bedrock-runtime", endpoint_url=srv.url, region_name=REGION, aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG)


@pytest.fixture(scope="session")
def batch_root(tmp_path_factory) -> Path:
    """The directory the session server allows file:// batch locations under."""
    return tmp_path_factory.mktemp("batch-root")


@pytest.fixture(scope="session")
def server(tmp_path_factory, _hermetic_client_env, batch_root) -> Server:
    global _SERVER_LOG
    srv = start_server(TEST_CONFIG, tmp_path_factory.mktemp("basalt"),
                       {"BASALT_ALLOWED_PATHS": str(batch_root)}, tls=True)
    _SERVER_LOG = srv.log_path
    yield srv
    crashed = stop_server(srv)
    _SERVER_LOG = None
    if crashed is not None:
        pytest.fail(
            f"basalt serve exited (code {crashed}) while the tests were running\n"
            f"--- server log tail ---\n{_tail(srv.log_path)}"
        )


@pytest.fixture(scope="session")
def create_key(server):
    """Create an API key with the CLI: `basalt keys create --name N --json`."""

    def _create(name: str) -> Key:
        data = server.cli_json("keys", "create", "--name", name, "--json")
        assert isinstance(data, dict), f"keys create --json must print an object, got {data!r}"
        missing = {"id", "access_key_id", "secret_access_key", "bearer_token"} - set(data)
        assert not missing, f"keys create --json output lacks {sorted(missing)}: {data!r}"
        for field in ("id", "access_key_id", "secret_access_key", "bearer_token"):
            assert isinstance(data[field], str) and data[field], (
                f"keys create: {field} must be a non-empty string, got {data[field]!r}"
            )
        return Key(
            id=data["id"],
            name=name,
            access_key_id=data["access_key_id"],
            secret_access_key=data["secret_access_key"],
            bearer_token=data["bearer_token"],
        )

    return _create


@pytest.fixture(scope="session")
def key(create_key) -> Key:
    return create_key("tests")


# --------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------

BOTO_CONFIG = Config(
    # No retries: a retried 500 would hide a server fault.
    retries={"total_max_attempts": 1},
    read_timeout=300,
    connect_timeout=10,
)


@pytest.fixture(scope="session")
def make_client(server):
    """boto3 client factory with SigV4 credentials (defaults: the `tests` key)."""

    def _make(
        service: str,
        key: Key | None = None,
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str = REGION,
    ):
        if key is not None:
            access_key_id = access_key_id or key.access_key_id
            secret_access_key = secret_access_key or key.secret_access_key
        session = boto3.session.Session()
        return session.client(
            service,
            endpoint_url=server.url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=BOTO_CONFIG,
        )

    return _make


@pytest.fixture(scope="session")
def runtime(make_client, key):
    """bedrock-runtime client, SigV4-signed with the `tests` key."""
    return make_client("bedrock-runtime", key)


@pytest.fixture(scope="session")
def control(make_client, key):
    """bedrock (control plane) client, SigV4-signed with the `tests` key."""
    return make_client("bedrock", key)


class AuthRecorder:
    """Records the Authorization header of each request a boto3 client sends."""

    def __init__(self, client):
        self.seen: list[str | None] = []
        client.meta.events.register("before-send", self._record)

    def _record(self, request, **kwargs):
        auth = request.headers.get("Authorization")
        if isinstance(auth, bytes):
            auth = auth.decode()
        self.seen.append(auth)


@pytest.fixture(scope="session")
def tls_endpoint(server):
    """(https URL, CA bundle path) of the session server's own HTTPS listener.

    botocore sends bearer tokens only over https, so boto3 users of
    AWS_BEARER_TOKEN_BEDROCK need https: the server serves it itself
    (`--tls-listen` with `--tls self-signed`, whose certificate it keeps in
    `<data dir>/tls/cert.pem`).
    """
    cert = server.data_dir / "tls" / "cert.pem"
    assert cert.is_file(), f"the server made no self-signed certificate at {cert}"
    return f"https://127.0.0.1:{server.tls_port}", str(cert)


@pytest.fixture
def make_bearer_client(tls_endpoint, monkeypatch):
    """boto3 client using bearer auth via AWS_BEARER_TOKEN_BEDROCK (no SigV4 credentials).

    botocore sends bearer tokens only over https, so the client talks to the
    TLS relay. The env var stays set for the rest of the test (botocore checks
    it per request), so don't use the SigV4 session clients in the same test.
    Returns (client, AuthRecorder).
    """
    url, ca_bundle = tls_endpoint

    def _make(service: str, token: str, region: str = REGION):
        monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", token)
        session = boto3.session.Session()
        client = session.client(
            service,
            endpoint_url=url,
            region_name=region,
            verify=ca_bundle,
            config=BOTO_CONFIG,
        )
        return client, AuthRecorder(client)

    return _make


@pytest.fixture(scope="session")
def make_openai(server):
    def _make(api_key: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=server.url + "/v1", api_key=api_key, max_retries=0, timeout=300
        )

    return _make


@pytest.fixture(scope="session")
def oai(make_openai, key) -> openai.OpenAI:
    return make_openai(key.bearer_token)


_DEFAULT = object()


@pytest.fixture(scope="session")
def raw_post(server, key):
    """raw_post(path, body_bytes, headers=None, token=<tests bearer>) -> (status, headers, body).

    Sends `Authorization: Bearer <token>` unless token=None. JSON content type
    unless headers override it. Header names in the result are lower-cased.
    """

    def _post(path: str, body: bytes, headers: dict | None = None, token=_DEFAULT) -> RawResponse:
        h = {"Content-Type": "application/json"}
        if token is _DEFAULT:
            token = key.bearer_token
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        return http_request(server.port, "POST", path, body, h)

    return _post


@pytest.fixture(scope="session")
def raw_get(server):
    def _get(path: str, headers: dict | None = None) -> RawResponse:
        return http_request(server.port, "GET", path, b"", headers)

    return _get


@pytest.fixture(scope="session")
def converse_ok(runtime):
    """A tiny Converse call that must succeed: proves the server is still serving."""

    def _check(client=None):
        client = client or runtime
        resp = client.converse(
            modelId=CHAT_MODEL,
            messages=[user_msg("Hi")],
            inferenceConfig={"maxTokens": 2, "temperature": 0.0},
        )
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert resp["usage"]["outputTokens"] >= 1, "follow-up converse produced no tokens"
        return resp

    return _check


@pytest.fixture(scope="session")
def raw_converse_ok(raw_post):
    """A tiny Converse call over raw HTTP with bearer auth that must succeed."""

    def _check():
        body = json.dumps(
            {
                "messages": [user_msg("Hi")],
                "inferenceConfig": {"maxTokens": 2, "temperature": 0.0},
            }
        ).encode()
        r = raw_post(model_path(CHAT_MODEL, "converse"), body)
        assert r.status == 200, f"follow-up converse failed: HTTP {r.status} {r.body[:300]!r}"
        assert isinstance(converse_text(r.json()), str)
        return r

    return _check
