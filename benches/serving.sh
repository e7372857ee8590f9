#!/usr/bin/env bash
# Basalt vs llama-server on the same model, threads and context, same client load
# (benches/serving.py), alternating. llama-server is built from the llama.cpp tree in
# the pinned llama-cpp-python sdist (GGML_NATIVE=ON, AMX off, as Basalt's build).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$REPO/benches/llama_cpp.sh"
install_system_packages
install_python_clients
build_release
fetch_models
SLOTS="${SLOTS:-16}"
CTX_PER_SLOT="${CTX_PER_SLOT:-1024}"
THREADS="${THREADS:-$(nproc)}"
MODEL="$BASALT_MODELS_DIR/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_BIN=$(llama_cpp_tool llama-server)
WORK="$(mktemp -d)"
trap 'kill $BASALT $LLAMA 2>/dev/null || true; rm -rf "$WORK"' EXIT
LPORT=$(free_port); BPORT=$(free_port)
"$SERVER_BIN" -m "$MODEL" -t "$THREADS" -np "$SLOTS" -c $((SLOTS * CTX_PER_SLOT)) --port "$LPORT" \
  --alias huggingfacetb.smollm2-135m-instruct-v1:0 --jinja > "$WORK/llama.log" 2>&1 &
LLAMA=$!
sed -e "s/^slots = .*/slots = $SLOTS/" -e "s/^context_per_slot = .*/context_per_slot = $CTX_PER_SLOT/" \
    -e "s/^threads = .*/threads = $THREADS/" "$REPO/config/basalt.toml" > "$WORK/basalt.toml"
BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" serve --config "$WORK/basalt.toml" --listen "127.0.0.1:$BPORT" \
  --models-dir "$BASALT_MODELS_DIR" > "$WORK/basalt.log" 2>&1 &
BASALT=$!
for p in $LPORT $BPORT; do for _ in $(seq 300); do curl -sf "http://127.0.0.1:$p/health" >/dev/null && break; sleep 0.2; done; done
TOKEN=$(BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" keys create --name bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bearer_token"])')
"$VENV/bin/python" "$REPO/benches/serving.py" "basalt=http://127.0.0.1:$BPORT,$TOKEN" "llama-server=http://127.0.0.1:$LPORT"
