#!/usr/bin/env bash
# Soak: SOAK_SECONDS (default 600) of mixed load (chat, streams, embeddings, Retrieve,
# ApplyGuardrail) on one node with the default config; prints the node's RSS every
# 10 s, per kind the calls, throttles and p50/p99 in the first and last third, and
# fails on any error that is not a modelled throttle. See benches/README.md.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
install_python_clients
build_release
fetch_models
WORK="$(mktemp -d)"
trap 'kill $BASALT 2>/dev/null || true; wait $BASALT 2>/dev/null || true; rm -rf "$WORK"' EXIT
start_basalt_config "$REPO/config/basalt.toml" "$WORK"
read -r AKID SECRET < <(python3 -c 'import json,sys; k=json.load(open(sys.argv[1])); print(k["access_key_id"], k["secret_access_key"])' "$KEY_JSON")
"$VENV/bin/python" "$REPO/benches/soak.py" "http://127.0.0.1:$PORT" "$BEARER" "$AKID" "$SECRET" "$BASALT" "${SOAK_SECONDS:-600}"
