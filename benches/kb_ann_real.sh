#!/usr/bin/env bash
# The vector index on real sentence embeddings: up to N (default 100,000) sentences of
# this machine's Debian copyright files and Python docstrings, embedded with
# all-MiniLM-L6-v2 by the server (benches/kb_ann_corpus.py), then searched by the
# embedded store's vector set (exact, int8 scan, inverted file: the kb_latency example's
# file: mode) and by FAISS on the same vectors and queries (kb_latency_faiss.py).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
build_release
fetch_models
install_python_clients
ensure_faiss_venv
log "building the benchmark (release, native CPU)"
cargo build --release --locked -p basalt-kb --example kb_latency
# The embedded vectors are kept (embedding them takes ~15 min on 2 cores).
VECTORS="$REPO/benches/.work/ann-corpus-${N:-100000}"
if [ ! -f "$VECTORS/base.f32" ]; then
  WORK="$(mktemp -d)"
  trap 'kill $BASALT 2>/dev/null || true; rm -rf "$WORK"' EXIT
  start_basalt_in "$WORK"
  BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" keys create --name bench --json > "$WORK/key.json"
  mkdir -p "$VECTORS.partial"
  "$VENV/bin/python" "$REPO/benches/kb_ann_corpus.py" "http://127.0.0.1:$PORT" "$WORK/key.json" "$VECTORS.partial" "${N:-100000}"
  kill "$BASALT"
  rm -rf "$VECTORS" && mv "$VECTORS.partial" "$VECTORS"
fi
"$CARGO_TARGET_DIR/release/examples/kb_latency" "" "file:$VECTORS"
"$PEER_VENV/bin/python" "$REPO/benches/kb_latency_faiss.py" "$VECTORS" --hnsw
