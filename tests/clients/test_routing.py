"""Routing across a remote model's deployments: retries on another deployment,
the circuit breaker (a failing deployment is skipped once it opens, and tried again
after its cool-down), timeouts, no retry once an answer has started streaming, no
retry of the caller's own errors, and the explicit fallback chain that says which
model answered. Upstreams: the session's Basalt (`/v1`), a closed port, a socket that
accepts and never answers, and the Anthropic double."""
import socket
import threading
import time

import boto3
import pytest

from anthropic_double import API_KEY, AnthropicDouble
from basalt_support import CHAT_MODEL, REGION, converse_text, http_request, inline_table, remote_model_toml, user_msg
from conftest import BOTO_CONFIG, _free_port, _tail, start_server, stop_server

ROUTED = "basalt.routed-v1:0"
HANGING = "basalt.routed-hanging-v1:0"
BROKEN = "basalt.broken-with-fallback-v1:0"
GOOD = "basalt.good-v1:0"
CLAUDE_PAIR = "anthropic.claude-pair-v1:0"
CLAUDE_PAIR_BAD_KEY = "anthropic.claude-pair-bad-key-v1:0"


def model(id, deployments, routing="", fallbacks=""):
    return remote_model_toml(id, f"deployments = [{', '.join(deployments)}]", extra=(routing, fallbacks))


def openai_dep(base, timeout=60):
    return inline_table(api="openai", base_url=base, model=CHAT_MODEL, api_key_env="UP_KEY", timeout_secs=timeout, context_window=1024)


def anthropic_dep(base, env="ANT_KEY"):
    return inline_table(api="anthropic", base_url=base, model="claude-double", api_key_env=env)


class Hanging:
    """Accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture(scope="module")
def env(server, create_key, tmp_path_factory):
    double, hanging = AnthropicDouble(), Hanging()
    up = f"{server.url}/v1"
    closed = f"http://127.0.0.1:{_free_port()}/v1"
    fast_breaker = "routing = { retries = 2, backoff_ms = 1, failure_threshold = 2, cooldown_secs = 2 }"
    config = 'region = "us-east-1"\n' + "".join([
        model(ROUTED, [openai_dep(closed), openai_dep(up)], fast_breaker),
        model(HANGING, [openai_dep(f"http://127.0.0.1:{hanging.port}/v1", timeout=1), openai_dep(up)], fast_breaker),
        model(GOOD, [openai_dep(up)]),
        model(BROKEN, [openai_dep(closed)], "routing = { retries = 0 }", f'fallbacks = ["{GOOD}"]'),
        model(CLAUDE_PAIR, [anthropic_dep(double.base_url), anthropic_dep(double.base_url)], fast_breaker),
        model(CLAUDE_PAIR_BAD_KEY, [anthropic_dep(double.base_url, "ANT_BAD"), anthropic_dep(double.base_url, "ANT_BAD")], fast_breaker),
    ])
    base = tmp_path_factory.mktemp("routing")
    (base / "front.toml").write_text(config)
    srv = start_server(base / "front.toml", base, {
        "UP_KEY": create_key("routing-upstream").bearer_token, "ANT_KEY": API_KEY, "ANT_BAD": "sk-ant-wrong",
    })
    key = srv.cli_json("keys", "create", "--name", "routing", "--json")
    rt = boto3.session.Session().client(
        "bedrock-runtime", endpoint_url=srv.url, region_name=REGION,
        aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG,
    )
    yield {"server": srv, "rt": rt, "closed": closed, "up": up, "double": double, "hanging": hanging}
    crashed = stop_server(srv)
    double.close()
    hanging.close()
    assert crashed is None, f"the front server crashed:\n{_tail(srv.log_path)}"


def attempts(srv, deployment, outcome):
    metrics = http_request(srv.port, "GET", "/metrics").body.decode()
    for line in metrics.splitlines():
        if line.startswith("basalt_upstream_attempts_total{") and f'deployment="{deployment}"' in line \
                and f'outcome="{outcome}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def ask(rt, model, text="Say hi.", max_tokens=8):
    return rt.converse(modelId=model, messages=[user_msg(text)], inferenceConfig={"maxTokens": max_tokens, "temperature": 0})


def test_a_dead_deployment_is_retried_around_then_skipped_then_tried_after_its_cooldown(env):
    rt, srv = env["rt"], env["server"]
    for _ in range(6):
        assert converse_text(ask(rt, ROUTED)), "every request is answered by the healthy deployment"
    # The breaker opened after 2 consecutive failures: later requests never tried it.
    assert attempts(srv, env["closed"], "retryable_error") == 2
    assert attempts(srv, env["up"], "ok") >= 6
    time.sleep(2.5)  # the cool-down (not a timing assertion: the count below is exact)
    assert converse_text(ask(rt, ROUTED))
    assert attempts(srv, env["closed"], "retryable_error") == 3, "half-open: tried exactly once more"


def test_a_hanging_deployment_times_out_and_the_request_is_retried(env):
    hanging = f"http://127.0.0.1:{env['hanging'].port}/v1"
    assert converse_text(ask(env["rt"], HANGING))
    assert attempts(env["server"], hanging, "retryable_error") == 1


def test_the_fallback_chain_answers_and_says_which_model_did(env):
    rt = env["rt"]
    resp = ask(rt, BROKEN, "Name a colour.", max_tokens=12)
    direct = ask(rt, GOOD, "Name a colour.", max_tokens=12)
    assert converse_text(resp) == converse_text(direct)
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-basalt-answered-by"] == GOOD
    assert direct["ResponseMetadata"]["HTTPHeaders"]["x-basalt-answered-by"] == GOOD
    stream = rt.converse_stream(modelId=BROKEN, messages=[user_msg("Name a colour.")], inferenceConfig={"maxTokens": 12, "temperature": 0})
    assert stream["ResponseMetadata"]["HTTPHeaders"]["x-basalt-answered-by"] == GOOD
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in stream["stream"] if "contentBlockDelta" in e)
    assert text == converse_text(direct)


def test_no_retry_after_the_first_streamed_byte(env):
    double, rt = env["double"], env["rt"]
    before = len(double.requests)
    resp = rt.converse_stream(modelId=CLAUDE_PAIR, messages=[user_msg("fail midway please")])
    with pytest.raises(rt.exceptions.ClientError):
        for _ in resp["stream"]:
            pass
    assert len(double.requests) == before + 1, "a stream that failed after it started must not be retried"


def test_retryable_upstream_errors_are_retried_and_caller_errors_are_not(env):
    double, rt = env["double"], env["rt"]
    before = len(double.requests)
    with pytest.raises(rt.exceptions.ClientError) as info:
        ask(rt, CLAUDE_PAIR, "raise 529")
    assert info.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert len(double.requests) == before + 3, "529 is retried (retries = 2)"
    before = len(double.requests)
    with pytest.raises(rt.exceptions.AccessDeniedException):
        ask(rt, CLAUDE_PAIR_BAD_KEY, "hello")
    assert len(double.requests) == before + 1, "an auth error is the same everywhere: no retry"
