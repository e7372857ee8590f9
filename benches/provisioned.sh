#!/usr/bin/env bash
# Provisioned-throughput isolation (benches/provisioned.py): default config, 2 threads.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
install_python_clients
build_release
fetch_models
WORK="$(mktemp -d)"
trap 'kill $BASALT 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(free_port)
sed -e "s/^threads = .*/threads = ${THREADS:-2}/" "$REPO/config/basalt.toml" > "$WORK/basalt.toml"
# SHARED_STEP_INTERVAL=N overrides [provisioned] shared_step_interval (1: no compute kept).
if [ -n "${SHARED_STEP_INTERVAL:-}" ]; then
  printf '\n[provisioned]\nshared_step_interval = %s\n' "$SHARED_STEP_INTERVAL" >> "$WORK/basalt.toml"
fi
BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" serve --config "$WORK/basalt.toml" --listen "127.0.0.1:$PORT" \
  --models-dir "$BASALT_MODELS_DIR" > "$WORK/basalt.log" 2>&1 &
BASALT=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
TOKEN=$(BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" keys create --name bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bearer_token"])')
"$VENV/bin/python" "$REPO/benches/provisioned.py" "http://127.0.0.1:$PORT" "$TOKEN"
