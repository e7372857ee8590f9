#!/usr/bin/env bash
# A local fleet on loopback: one PostgreSQL (the pinned test dependency's binaries)
# holding every node's records, N Basalt nodes (default 3) on the default config plus
# `[store] url`, and the small TCP load balancer of scripts/fleet_lb.py in front.
#
#   bash scripts/fleet.sh            # FLEET_NODES=3 FLEET_DIR=.fleet FLEET_PORT=8080
#
# Prints the balancer's address and the admin key, then runs until Ctrl-C (or
# SIGTERM), when it drains the nodes (SIGTERM: streams in flight finish), stops the
# balancer and then PostgreSQL. State stays in FLEET_DIR (the database too), so a
# second run starts the same fleet again; delete the folder to start afresh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NODES="${FLEET_NODES:-3}"
DIR="$(mkdir -p "${FLEET_DIR:-$REPO/.fleet}" && cd "${FLEET_DIR:-$REPO/.fleet}" && pwd)"
LB_PORT="${FLEET_PORT:-8080}"

install_system_packages
install_python_clients
build_release
fetch_models

PIDS=()
cleanup() {
  trap - EXIT INT TERM
  log "stopping the fleet"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  # Closing the holder's stdin stops PostgreSQL.
  exec 3>&- || true
  wait "$PG_HOLDER" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

log "starting PostgreSQL in $DIR/postgres"
mkfifo "$DIR/.pg-hold" 2>/dev/null || true
"$VENV/bin/python" "$REPO/scripts/pg_server.py" "$DIR/postgres" < "$DIR/.pg-hold" > "$DIR/postgres.uri" 2>"$DIR/postgres.log" &
PG_HOLDER=$!
exec 3>"$DIR/.pg-hold"
for _ in $(seq 300); do [ -s "$DIR/postgres.uri" ] && break; sleep 0.1; done
STORE_URL="$(head -n1 "$DIR/postgres.uri")"
[ -n "$STORE_URL" ] || { log "PostgreSQL did not start:"; cat "$DIR/postgres.log" >&2; exit 1; }

CONFIG="$DIR/fleet.toml"
{ cat "$REPO/config/basalt.toml"; printf '\n[store]\nurl = "%s"\n' "$STORE_URL"; } > "$CONFIG"
export BASALT_CONFIG="$CONFIG"

ADDRESSES=()
for i in $(seq 1 "$NODES"); do
  data="$DIR/node$i"
  mkdir -p "$data"
  # Every node derives SigV4 secrets from one master key: the first node's.
  if [ "$i" -gt 1 ] && [ ! -f "$data/master.key" ]; then
    cp "$DIR/node1/master.key" "$data/master.key"
  fi
  port=$(free_port)
  "$BASALT_BIN" serve --data-dir "$data" --models-dir "$BASALT_MODELS_DIR" \
    --listen "127.0.0.1:$port" > "$DIR/node$i.log" 2>&1 &
  PIDS+=($!)
  up=""
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && { up=1; break; }; sleep 0.2; done
  [ -n "$up" ] || { log "node $i did not start; its log:"; cat "$DIR/node$i.log" >&2; exit 1; }
  ADDRESSES+=("127.0.0.1:$port")
  log "node $i: http://127.0.0.1:$port (data in $data, log in $DIR/node$i.log)"
done

"$VENV/bin/python" "$REPO/scripts/fleet_lb.py" "$LB_PORT" "${ADDRESSES[@]}" > "$DIR/balancer.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q "listening on" "$DIR/balancer.log" 2>/dev/null && break; sleep 0.1; done
ENDPOINT="http://$(sed -n 's/^listening on //p' "$DIR/balancer.log" | head -n1)"

echo
echo "Fleet of $NODES nodes on one PostgreSQL ($STORE_URL)"
echo "  endpoint (round robin over the nodes): $ENDPOINT"
echo "  boto3.client(\"bedrock-runtime\", endpoint_url=\"$ENDPOINT\", region_name=\"us-east-1\", ...)"
if grep -q "AWS_ACCESS_KEY_ID=" "$DIR/node1.log"; then
  echo "  the admin key node 1 created (shown once, also in $DIR/node1.log):"
  grep -E "AWS_ACCESS_KEY_ID=|AWS_SECRET_ACCESS_KEY=|bearer" "$DIR/node1.log" | sed 's/^/  /'
fi
echo "  CLI on the fleet: BASALT_CONFIG=$CONFIG $BASALT_BIN keys list --data-dir $DIR/node1"
echo "Ctrl-C stops the fleet."
wait "${PIDS[0]}"
