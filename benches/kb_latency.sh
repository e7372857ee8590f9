#!/usr/bin/env bash
# Knowledge-base query latency: the embedded store (SQLite + vectors + tantivy) at 10k
# and 100k chunks, and its vector set alone at 1M vectors, beside FAISS on the same
# 1M vectors and queries (benches/kb_latency_faiss.py). Synthetic clustered data; see
# crates/basalt-kb/examples/kb_latency.rs. Needs ~3 GB of disk under $WORK for the
# exported vectors. SIZES overrides the default list (e.g. SIZES="store:10000");
# HNSW=1 adds FAISS HNSW at 1M vectors (a ~5 min build on 2 cores).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
ensure_faiss_venv
log "building the benchmark (release, native CPU)"
cargo build --release --locked -p basalt-kb --example kb_latency
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$CARGO_TARGET_DIR/release/examples/kb_latency" "$WORK" ${SIZES:-store:10000 store:100000 vectors:1000000}
if [ -f "$WORK/base.f32" ]; then
  "$PEER_VENV/bin/python" "$REPO/benches/kb_latency_faiss.py" "$WORK" ${HNSW:+--hnsw}
fi
