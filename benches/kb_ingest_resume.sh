#!/usr/bin/env bash
# Ingestion of DOCS (100,000) small documents with the server killed (SIGKILL) when
# KILL_AT (0.5) of them are counted, restarted, and the job followed to its end:
# documents/s, peak RSS, documents embedded again. benches/kb_ingest_resume.py.
# The corpus is written once under benches/.work/ingest-resume/docs (SciFact's
# sentences, two per document, when ../shared/data/beir/scifact is present).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
build_release
fetch_models
install_python_clients
WORK="$REPO/benches/.work/ingest-resume"
mkdir -p "$WORK"
rm -rf "$WORK/data" "$WORK/basalt.log"
"$VENV/bin/python" "$REPO/benches/kb_ingest_resume.py" "$BASALT_BIN" "$REPO/config/basalt.toml" \
  "$BASALT_MODELS_DIR" "$WORK" "${DOCS:-100000}" "${KILL_AT:-0.5}"
