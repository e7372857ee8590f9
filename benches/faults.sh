#!/usr/bin/env bash
# Fault injection on one node (benches/faults.py says what is checked): a full disk
# under the data directory (a 24 MiB tmpfs; needs root to mount it, else that part is
# skipped and says so), an upstream that resets or sends garbage, very slow stream
# readers, 10,000 idle connections. Not part of CI: it mounts a filesystem and opens
# 10,000 sockets.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
install_python_clients
build_release
fetch_models
ulimit -n 32768 2>/dev/null || ulimit -n "$(ulimit -Hn)"
WORK="$(mktemp -d)"
DATA="$WORK/data"
mkdir -p "$DATA"
MOUNTED=""
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=24m tmpfs "$DATA" 2>/dev/null; then
  MOUNTED=1
else
  log "cannot mount a tmpfs for the data directory: the disk-full part is skipped"
fi
GPORT=$(free_port)
{ cat "$REPO/config/basalt.toml"; cat <<TOML

[[models]]
id = "basalt.garbage-upstream-v1:0"
name = "an upstream that resets or sends garbage"
provider = "Basalt"
engine = "remote"
native_body = "meta-llama"
input_modalities = ["TEXT"]
output_modalities = ["TEXT"]
streaming = true
lifecycle = { status = "ACTIVE" }
price = { input_per_1k = 0.001, output_per_1k = 0.002 }
upstream = { api = "openai", base_url = "http://127.0.0.1:$GPORT/v1", model = "garbage", timeout_secs = 10 }
routing = { retries = 0 }
TOML
} > "$WORK/faults.toml"
PORT=$(free_port)
BASALT_CONFIG="$WORK/faults.toml" "$BASALT_BIN" serve --data-dir "$DATA" --models-dir "$BASALT_MODELS_DIR" \
  --listen "127.0.0.1:$PORT" > "$WORK/basalt.log" 2>&1 &
BASALT=$!
trap 'kill $BASALT 2>/dev/null || true; wait $BASALT 2>/dev/null || true; [ -n "$MOUNTED" ] && umount "$DATA"; rm -rf "$WORK"' EXIT
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
KEY_JSON=$(BASALT_CONFIG="$WORK/faults.toml" "$BASALT_BIN" keys create --data-dir "$DATA" --name faults --json)
read -r AKID SECRET BEARER < <(python3 -c 'import json,sys; k=json.loads(sys.argv[1]); print(k["access_key_id"], k["secret_access_key"], k["bearer_token"])' "$KEY_JSON")
BASALT_CONFIG="$WORK/faults.toml" "$VENV/bin/python" "$REPO/benches/faults.py" "http://127.0.0.1:$PORT" "$BEARER" "$AKID" "$SECRET" \
  "$BASALT" "$([ -n "$MOUNTED" ] && echo "$DATA" || echo -)" "$GPORT" "$BASALT_BIN"
