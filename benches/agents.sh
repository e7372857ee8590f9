#!/usr/bin/env bash
# Agent overhead, side by side in one run (benches/agent_overhead.py): the same 3-tool
# task against an upstream that answers at once, run by Basalt's InvokeAgent, by
# Strands Agents driving Basalt's ConverseStream and by LangGraph's prebuilt ReAct
# agent with ChatOpenAI; time per step minus model and tool time. Then RSS and session
# records with IDLE_SESSIONS idle Basalt sessions.
# Environment: TURNS (200), WARMUP (20), ROUNDS (4), FRAMEWORKS, IDLE_SESSIONS (10000;
# 0 skips), BASALT_BIN (default: the release build, built here when missing or with
# BUILD=1).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
if [ "${BUILD:-0}" = 1 ] || [ ! -x "$BASALT_BIN" ]; then
  install_system_packages
  build_release
fi
# The peers and the clients, pinned (boto3, botocore and openai as tests/clients/requirements.txt).
AGENTS_REQUIREMENTS="strands-agents==1.62.0 langgraph==1.2.22 langgraph-prebuilt==1.1.2 langchain-openai==1.7.4 langchain-core==1.8.1 boto3==1.44.5 botocore==1.44.8 openai==3.51.0"
AGENTS_VENV="${AGENTS_VENV:-$REPO/benches/.work/agents-venv}"
if [ ! -x "$AGENTS_VENV/bin/python" ]; then
  log "creating $AGENTS_VENV"
  python3 -m venv "$AGENTS_VENV"
fi
if [ "$(cat "$AGENTS_VENV/.installed" 2>/dev/null)" != "$AGENTS_REQUIREMENTS" ]; then
  log "installing $AGENTS_REQUIREMENTS"
  # shellcheck disable=SC2086
  "$AGENTS_VENV/bin/pip" install --quiet --disable-pip-version-check $AGENTS_REQUIREMENTS
  printf '%s' "$AGENTS_REQUIREMENTS" > "$AGENTS_VENV/.installed"
fi
exec "$AGENTS_VENV/bin/python" "$REPO/benches/agent_overhead.py"
