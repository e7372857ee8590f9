#!/usr/bin/env bash
# Decode beside a CPU-bound neighbour, and chat beside a knowledge-base ingestion
# (issue 22, item 2): llama-server, Basalt with [engine] adapt_threads = false (every
# engine always on every core, as before the CPU budget) and Basalt as shipped, in one
# run, through the same streaming client (benches/cpu_contention.py).
# The neighbour is one busy-loop process per NEIGHBOURS (default 1).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$REPO/benches/llama_cpp.sh"
install_system_packages
install_python_clients
build_release
fetch_models
THREADS="${THREADS:-$(nproc)}"
NEIGHBOURS="${NEIGHBOURS:-1}"
MODEL="$BASALT_MODELS_DIR/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_BIN=$(llama_cpp_tool llama-server)
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
PY="$VENV/bin/python"
BENCH="$REPO/benches/cpu_contention.py"
RESULTS="$WORK/results.jsonl"

start_neighbours() {
  NB=()
  for _ in $(seq "$NEIGHBOURS"); do python3 -c 'while True: pass' & NB+=($!); PIDS+=($!); done
  sleep 2  # the load reading settles (Basalt reads it every 250 ms, smoothed)
}
stop_neighbours() { for p in "${NB[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; NB=(); }
record() { echo "{\"system\": \"$1\", \"case\": \"$2\", \"result\": $3}" | tee -a "$RESULTS"; }

# --- llama-server (the peer): same model, threads, slots and context per slot
PORT=$(free_port)
"$SERVER_BIN" -m "$MODEL" -t "$THREADS" -tb "$THREADS" -np 4 -c 8192 --host 127.0.0.1 --port "$PORT" \
  > "$WORK/llama-server.log" 2>&1 &
LS=$!; PIDS+=($LS)
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
log "llama-server: decode solo, then beside $NEIGHBOURS busy neighbour(s)"
record llama-server solo "$("$PY" "$BENCH" decode "http://127.0.0.1:$PORT")"
start_neighbours
record llama-server neighbour "$("$PY" "$BENCH" decode "http://127.0.0.1:$PORT")"
stop_neighbours
kill $LS; wait $LS 2>/dev/null || true

# --- Basalt, without and with the CPU budget
for adapt in false true; do
  system="basalt-adapt-$adapt"
  mkdir -p "$WORK/$system"
  sed "s/^adapt_threads = .*/adapt_threads = $adapt/; s/^threads = 0 /threads = $THREADS /" \
    "$REPO/config/basalt.toml" > "$WORK/$system.toml"
  start_basalt_config "$WORK/$system.toml" "$WORK/$system"
  B=$BASALT; PIDS+=($B)
  URL="http://127.0.0.1:$PORT"
  log "$system: decode solo, then beside $NEIGHBOURS busy neighbour(s)"
  record "$system" solo "$("$PY" "$BENCH" decode "$URL" "$BEARER")"
  start_neighbours
  record "$system" neighbour "$("$PY" "$BENCH" decode "$URL" "$BEARER")"
  curl -sf "$URL/metrics" | grep -E '^basalt_(engine_threads|cpu_)' | sed "s/^/  [$system, neighbour] /" >&2
  stop_neighbours
  log "$system: ingestion of 3,000 short documents alone, then with chat decoding throughout"
  record "$system" ingest-solo "$("$PY" "$BENCH" ingest "$URL" "$KEY_JSON" "$WORK/$system")"
  record "$system" ingest-with-chat "$("$PY" "$BENCH" ingest "$URL" "$KEY_JSON" "$WORK/$system" --with-chat)"
  log "$system: chat decode while a fine-tuning job trains"
  record "$system" during-training "$("$PY" "$BENCH" train "$URL" "$KEY_JSON" "$WORK/$system")"
  kill $B; wait $B 2>/dev/null || true
done

python3 - "$RESULTS" "$NEIGHBOURS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
get = lambda s, c: next(r["result"] for r in rows if r["system"] == s and r["case"] == c)
print(f"\nDecode tok/s, one streamed request at a time, solo and beside {sys.argv[2]} busy-loop neighbour(s):")
print(f"{'system':24} {'solo':>8} {'neighbour':>10} {'kept':>7}")
for s in ("llama-server", "basalt-adapt-false", "basalt-adapt-true"):
    solo, nb = get(s, "solo")["decode_tok_s"], get(s, "neighbour")["decode_tok_s"]
    print(f"{s:24} {solo:8.1f} {nb:10.1f} {100 * nb / solo:6.0f}%   (goal >= 40 %)")
print("\nIngestion (3,000 short documents) and chat decode, alone and together:")
for s in ("basalt-adapt-false", "basalt-adapt-true"):
    solo_chat = get(s, "solo")["decode_tok_s"]
    alone, both = get(s, "ingest-solo"), get(s, "ingest-with-chat")
    print(f"{s:24} ingestion {alone['docs_per_s']:7.1f} docs/s alone, {both['docs_per_s']:7.1f} with chat "
          f"({100 * both['docs_per_s'] / alone['docs_per_s']:.0f} %); chat {solo_chat:6.1f} tok/s alone, "
          f"{both['chat_decode_tok_s']:6.1f} during ingestion ({100 * both['chat_decode_tok_s'] / solo_chat:.0f} %, "
          f"{both['chat_requests']} requests)   (goals >= 40 % each)")
print("\nChat decode while a LoRA fine-tuning job trains ([customization] threads, default half the cores):")
for s in ("basalt-adapt-false", "basalt-adapt-true"):
    solo_chat, during = get(s, "solo")["decode_tok_s"], get(s, "during-training")
    print(f"{s:24} {during['decode_tok_s']:7.1f} tok/s ({100 * during['decode_tok_s'] / solo_chat:.0f} % of solo; "
          f"training throughout: {during['training_throughout']})")
PY
