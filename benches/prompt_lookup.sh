#!/usr/bin/env bash
# Prompt-lookup speculation (issue 22, item 4): Basalt with [engine] lookup_drafts = 0
# and = 4, llama-server without speculation and with its own n-gram speculation
# (--spec-type ngram-simple), in one run, through the same client
# (benches/prompt_lookup.py): decode tok/s on grounded answers and on free writing,
# Basalt's acceptance rate, and whether the answers stayed the same.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$REPO/benches/llama_cpp.sh"
install_system_packages
install_python_clients
build_release
fetch_models
THREADS="${THREADS:-$(nproc)}"
DRAFTS="${DRAFTS:-4}"
MODEL="$BASALT_MODELS_DIR/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_BIN=$(llama_cpp_tool llama-server)
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
RESULTS="$WORK/results.jsonl"
wait_up() { for _ in $(seq 300); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.2; done; return 1; }

for spec in none ngram-simple; do
  PORT=$(free_port)
  extra=(); [ "$spec" = none ] || extra=(--spec-type "$spec")
  "$SERVER_BIN" -m "$MODEL" -t "$THREADS" -tb "$THREADS" -np 4 -c 8192 --host 127.0.0.1 --port "$PORT" \
    "${extra[@]}" > "$WORK/llama-server-$spec.log" 2>&1 &
  LS=$!; PIDS+=($LS)
  wait_up "$PORT"
  log "llama-server, speculation: $spec"
  echo "{\"system\": \"llama-server spec=$spec\", \"result\": $("$VENV/bin/python" "$REPO/benches/prompt_lookup.py" "http://127.0.0.1:$PORT")}" | tee -a "$RESULTS"
  kill $LS; wait $LS 2>/dev/null || true
done

for drafts in 0 "$DRAFTS"; do
  sed "s/^lookup_drafts = .*/lookup_drafts = $drafts/; s/^threads = 0 /threads = $THREADS /" \
    "$REPO/config/basalt.toml" > "$WORK/basalt-$drafts.toml"
  start_basalt_config "$WORK/basalt-$drafts.toml" "$WORK/basalt-$drafts"
  B=$BASALT; PIDS+=($B)
  log "Basalt, lookup_drafts = $drafts"
  R=$("$VENV/bin/python" "$REPO/benches/prompt_lookup.py" "http://127.0.0.1:$PORT" "$BEARER")
  M=$(curl -sf "http://127.0.0.1:$PORT/metrics" | python3 -c '
import re, sys
text = sys.stdin.read()
get = lambda n: sum(int(v) for v in re.findall(rf"^{n}{{[^}}]*}} (\d+)$", text, re.M))
print(get("basalt_engine_lookup_drafted_total"), get("basalt_engine_lookup_accepted_total"))')
  echo "{\"system\": \"basalt lookup_drafts=$drafts\", \"drafted_accepted\": \"$M\", \"result\": $R}" | tee -a "$RESULTS"
  kill $B; wait $B 2>/dev/null || true
done

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n{'system':32} {'grounded tok/s':>15} {'free tok/s':>11}  answers (grounded/free)")
base = {}
for r in rows:
    g, f = r["result"]["grounded"], r["result"]["free"]
    family = r["system"].split()[0]
    if family not in base:
        base[family] = r["result"]
        ratio = ""
    else:
        b = base[family]
        ratio = (f"  x{g['decode_tok_s'] / b['grounded']['decode_tok_s']:.2f} / x{f['decode_tok_s'] / b['free']['decode_tok_s']:.2f}"
                 f" (goals >= 1.5 / >= 0.98); same answers: {g['answers'] == b['grounded']['answers']}/{f['answers'] == b['free']['answers']}")
    extra = ""
    if r.get("drafted_accepted"):
        d, a = (int(x) for x in r["drafted_accepted"].split())
        extra = f"  acceptance {a}/{d} = {100 * a / d:.0f} %" if d else ""
    print(f"{r['system']:32} {g['decode_tok_s']:15.1f} {f['decode_tok_s']:11.1f}  {g['answers']}/{f['answers']}{ratio}{extra}")
PY
