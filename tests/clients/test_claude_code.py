"""Claude Code (pinned, installed from npm by scripts/lib.sh `install_claude_code`)
pointed at Basalt with ANTHROPIC_BASE_URL completes a one-shot `-p` prompt.

Claude Code's request carries ~20 tools and a long system prompt (well over the
local SmolLM2's context), so the model behind it here is a remote one: the Anthropic
double (`anthropic_double.py`, Anthropic's exact wire format), reached through
Basalt's Anthropic provider. What is tested is Basalt's side: Claude Code's real
requests (mid-conversation system messages, thinking, context_management,
output_config, streaming) are accepted on `/v1/messages` and its answer streams back."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from anthropic_double import API_KEY, AnthropicDouble
from basalt_support import inline_table, remote_model_toml
from conftest import _tail, start_server, stop_server

MODEL = "anthropic.claude-double-v1:0"


def claude_binary() -> Path:
    root = Path(os.environ.get("BASALT_CLAUDE_CODE", ""))
    binary = root / "node_modules/@anthropic-ai/claude-code-linux-x64/claude"
    if not binary.is_file():
        pytest.fail(f"Claude Code is not installed at {binary}: scripts/lib.sh install_claude_code installs it "
                    "(set BASALT_CLAUDE_CODE to its folder)")
    return binary


@pytest.fixture(scope="module")
def front(tmp_path_factory, _hermetic_client_env):
    double = AnthropicDouble()
    base = tmp_path_factory.mktemp("claude-code-front")
    path = base / "front.toml"
    path.write_text('region = "us-east-1"\n' + remote_model_toml(
        MODEL, "upstream = " + inline_table(api="anthropic", base_url=double.base_url, model="claude-double",
                                            api_key_env="BASALT_TEST_ANTHROPIC_KEY", timeout_secs=60),
        provider="Anthropic", tools=True, price=(0.003, 0.015)))
    srv = start_server(path, base, {"BASALT_TEST_ANTHROPIC_KEY": API_KEY})
    yield srv
    crashed = stop_server(srv)
    double.close()
    assert crashed is None, f"the front server crashed:\n{_tail(srv.log_path)}"


def test_claude_code_one_shot_prompt(front, tmp_path):
    key = front.cli_json("keys", "create", "--name", "claude-code", "--json")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": front.url,
        "ANTHROPIC_API_KEY": key["bearer_token"],
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    done = subprocess.run([str(claude_binary()), "-p", "Say hello to Basalt", "--model", MODEL],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"claude -p failed:\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}"
    # The double answers with the last user text it was sent: Claude Code's prompt made
    # the round trip through Basalt's Anthropic dialect and provider and back.
    assert "Say hello to Basalt" in done.stdout, done.stdout[-2000:]
    log = front.log_path.read_text(errors="replace")
    assert "request failed" not in log, _tail(front.log_path)
