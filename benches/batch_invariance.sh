#!/usr/bin/env bash
# Batch-invariant greedy decoding (issue 22, item 3): Basalt with [engine]
# batch_invariant = false (llama.cpp's flash attention on) and = true (off), the same
# binary, in one run (benches/batch_invariance.py): decode and prefill speed, 4-stream
# throughput, and how many greedy answers changed when sent together with random
# delays instead of alone. The cost of building llama.cpp without llamafile's tinyBLAS
# (.cargo/config.toml) is measured with llama-bench when LLAMA_BENCH_DEFAULT and
# LLAMA_BENCH_NO_LLAMAFILE name two llama-bench builds (see benches/README.md).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
install_python_clients
build_release
fetch_models
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
RESULTS="$WORK/results.jsonl"
for invariant in false true; do
  sed "s/^batch_invariant = .*/batch_invariant = $invariant/" "$REPO/config/basalt.toml" > "$WORK/invariant-$invariant.toml"
  start_basalt_config "$WORK/invariant-$invariant.toml" "$WORK/invariant-$invariant"
  B=$BASALT; PIDS+=($B)
  log "batch_invariant = $invariant"
  echo "{\"batch_invariant\": $invariant, \"result\": $("$VENV/bin/python" "$REPO/benches/batch_invariance.py" "http://127.0.0.1:$PORT" "$BEARER")}" | tee -a "$RESULTS"
  kill $B; wait $B 2>/dev/null || true
done
python3 - "$RESULTS" <<'PY'
import json, sys
rows = {r["batch_invariant"]: r["result"] for r in map(json.loads, open(sys.argv[1]))}
off, on = rows[False], rows[True]
print(f"\n{'':34} {'invariant=false':>16} {'invariant=true':>15} {'ratio':>7}")
for key, label in (("decode_short", "decode tok/s, 40-token prompt"), ("decode_long", "decode tok/s, ~750-token prompt"),
                   ("concurrent_tok_s", "4 streams, output tok/s"), ("prefill_long_ms", "first token, ~750-token prompt, ms")):
    print(f"{label:34} {off[key]:16.1f} {on[key]:15.1f} {on[key] / off[key]:7.2f}")
print(f"{'greedy answers changed by load':34} {off['mismatches']:>10} of {off['requests']} {on['mismatches']:>9} of {on['requests']}")
PY
