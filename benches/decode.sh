#!/usr/bin/env bash
# Single-request decode speed: Basalt's ConverseStream vs llama.cpp's own llama-bench
# (tg128) on the same model and thread count, in one run. llama-bench is built with
# GGML_NATIVE=ON and AMX off, as Basalt's build.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$REPO/benches/llama_cpp.sh"
install_system_packages
install_python_clients
build_release
fetch_models
THREADS="${THREADS:-$(nproc)}"
MODEL="$BASALT_MODELS_DIR/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"
BENCH=$(llama_cpp_tool llama-bench)
WORK="$(mktemp -d)"
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
log "llama-bench tg128, $THREADS threads"
TG=$("$BENCH" -m "$MODEL" -t "$THREADS" -p 0 -n 128 -r 5 -o json | python3 -c '
import json, sys; r = json.load(sys.stdin); print(r[0]["avg_ts"])')
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export BASALT_DATA_DIR="$WORK"
"$BASALT_BIN" serve --listen "127.0.0.1:$PORT" --models-dir "$BASALT_MODELS_DIR" > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
KEY=$("$BASALT_BIN" keys create --name bench --json)
AKID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["access_key_id"])' "$KEY")
SECRET=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secret_access_key"])' "$KEY")
log "Basalt ConverseStream, 1 request at a time"
OURS=$("$VENV/bin/python" "$REPO/benches/decode_stream.py" "http://127.0.0.1:$PORT" "$AKID" "$SECRET")
python3 - "$TG" "$OURS" <<'PY'
import json, sys
tg = float(sys.argv[1]); ours = json.loads(sys.argv[2])
print(f"llama-bench tg128:            {tg:7.1f} tok/s")
print(f"Basalt ConverseStream decode: {ours['decode_tok_s']:7.1f} tok/s ({ours['output_tokens']} tokens/request)")
print(f"ratio Basalt / llama-bench:   {ours['decode_tok_s'] / tg:7.2f}  (goal >= 0.90)")
PY
