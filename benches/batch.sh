#!/usr/bin/env bash
# Batch job vs one-at-a-time on-demand calls, same records, same server (benches/batch.py).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
install_python_clients
build_release
fetch_models
WORK="$(mktemp -d)"
trap 'kill $BASALT 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/batch"
PORT=$(free_port)
# Batch-heavy sizing: 16 sequences decoded together, 16 records in flight.
sed -e "s/^threads = .*/threads = ${THREADS:-2}/" -e "s/^slots = .*/slots = ${SLOTS:-16}/" \
  "$REPO/config/basalt.toml" > "$WORK/basalt.toml"
printf '\n[batch]\nconcurrency = %s\n' "${BATCH_CONCURRENCY:-16}" >> "$WORK/basalt.toml"
BASALT_ALLOWED_PATHS="$WORK/batch" BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" serve --config "$WORK/basalt.toml" \
  --listen "127.0.0.1:$PORT" --models-dir "$BASALT_MODELS_DIR" > "$WORK/basalt.log" 2>&1 &
BASALT=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
TOKEN=$(BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" keys create --name bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bearer_token"])')
"$VENV/bin/python" "$REPO/benches/batch.py" "http://127.0.0.1:$PORT" "$TOKEN" "$WORK/batch"
