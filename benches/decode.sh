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
PORT=$(free_port)
export BASALT_DATA_DIR="$WORK"
"$BASALT_BIN" serve --listen "127.0.0.1:$PORT" --models-dir "$BASALT_MODELS_DIR" > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
KEY=$("$BASALT_BIN" keys create --name bench --json)
AKID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["access_key_id"])' "$KEY")
SECRET=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secret_access_key"])' "$KEY")
log "Basalt ConverseStream, 1 request at a time"
OURS=$("$VENV/bin/python" "$REPO/benches/decode_stream.py" "http://127.0.0.1:$PORT" "$AKID" "$SECRET")
kill $SERVER; wait $SERVER 2>/dev/null || true
DEPTH=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["input_tokens"])' "$OURS")
# tg128 decodes from an empty context; Basalt's request has its prompt in the KV cache
# (the chat template adds a system prompt), so also measure llama-bench at that depth.
log "llama-bench tg128 at depth 0 and at depth $DEPTH (the request's prompt), $THREADS threads"
TG=$("$BENCH" -m "$MODEL" -t "$THREADS" -p 0 -n 128 -d "0,$DEPTH" -r 5 -o json | python3 -c '
import json, sys; r = json.load(sys.stdin); print(" ".join(str(x["avg_ts"]) for x in r))')
python3 - "$TG" "$OURS" "$DEPTH" <<'PY'
import json, sys
tg0, tgd = (float(x) for x in sys.argv[1].split()); ours = json.loads(sys.argv[2]); depth = sys.argv[3]
rate = ours["decode_tok_s"]
print(f"llama-bench tg128:                 {tg0:7.1f} tok/s")
print(f"llama-bench tg128 @ depth {depth:>4}:      {tgd:7.1f} tok/s")
print(f"Basalt ConverseStream decode:      {rate:7.1f} tok/s ({ours['output_tokens']} tokens/request, {depth}-token prompt)")
print(f"ratio Basalt / tg128:              {rate / tg0:7.2f}  (goal >= 0.95)")
print(f"ratio Basalt / tg128 @ same depth: {rate / tgd:7.2f}")
PY
