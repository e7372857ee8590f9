#!/usr/bin/env bash
# Knowledge-base ingestion throughput (and, with relevance judgements, retrieval
# quality) through the server's API: benches/kb_bench.py. DATASET names a BEIR-format
# directory (corpus.jsonl, queries.jsonl, qrels/test.tsv), e.g. SciFact; without one,
# the corpus is this machine's Debian copyright files (/usr/share/doc/*/copyright, one
# document each, no judgements), which measures throughput only. Beside it,
# sentence-transformers embeds the same texts (benches/st_encode.py; PEER=0 skips it).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
build_release
fetch_models
install_python_clients
WORK="$(mktemp -d)"
trap 'kill $BASALT 2>/dev/null || true; rm -rf "$WORK"' EXIT
DATASET="${DATASET:-}"
if [ -z "$DATASET" ]; then
  DATASET="$WORK/debian-copyright"
  mkdir -p "$DATASET"
  python3 - "$DATASET" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1]) / "corpus.jsonl"
with out.open("w") as f:
    for p in sorted(pathlib.Path("/usr/share/doc").glob("*/copyright")):
        text = p.read_text(errors="replace").strip()
        if text:
            f.write(json.dumps({"_id": p.parent.name, "title": p.parent.name, "text": text}) + "\n")
PY
fi
# The peer (PEER=0 skips it): sentence-transformers on the same model files and texts.
if [ "${PEER:-1}" != 0 ]; then
  ST_VENV="${ST_VENV:-$REPO/benches/.work/st-venv}"
  if [ ! -x "$ST_VENV/bin/python" ]; then
    log "creating $ST_VENV with sentence-transformers==6.2.0"
    python3 -m venv "$ST_VENV"
    "$ST_VENV/bin/pip" install --quiet --disable-pip-version-check sentence-transformers==6.2.0
  fi
  export ST_PYTHON="$ST_VENV/bin/python" ST_MODEL_DIR="$BASALT_MODELS_DIR/all-minilm-l6-v2"
fi
start_basalt_in "$WORK"
BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" keys create --name bench --json > "$WORK/key.json"
"$VENV/bin/python" "$REPO/benches/kb_bench.py" "http://127.0.0.1:$PORT" "$WORK/key.json" "$DATASET" "$WORK" ${MAX_DOCS:-}
