#!/usr/bin/env bash
# Gateway overhead: Basalt with auth and metering on, the model call replaced by the
# `echo` engine (an immediate answer), loaded by wrk at concurrency 1, 16 and 64.
# Load generator and server share the machine's cores, as in the peer figures.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
command -v wrk >/dev/null 2>&1 || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
build_release
DURATION="${DURATION:-15s}"
WORK="$(mktemp -d)"
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(free_port)
export BASALT_DATA_DIR="$WORK" BASALT_CONFIG="$REPO/benches/gateway.toml"
"$BASALT_BIN" serve --listen "127.0.0.1:$PORT" > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
export BASALT_TOKEN=$("$BASALT_BIN" keys create --name bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bearer_token"])')
printf '%-28s %5s %12s %10s %10s\n' "route" "conc" "req/s" "p50 ms" "p99 ms"
for route in openai_chat bedrock_converse; do
  path="/v1/chat/completions"; [ "$route" = bedrock_converse ] && path=""
  for c in 1 16 64; do
    threads=$(( c < 2 ? 1 : 2 ))
    out=$(wrk -t"$threads" -c"$c" -d"$DURATION" --latency -s "$REPO/benches/$route.lua" "http://127.0.0.1:$PORT$path")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    [ -n "$non2xx" ] && { echo "non-2xx responses: $non2xx"; echo "$out"; exit 1; }
    printf '%-28s %5s %12s %10s %10s\n' "$route" "$c" "$rps" "$p50" "$p99"
  done
done
rss=$(ps -o rss= -p "$SERVER")
echo "basalt RSS after load: $((rss / 1024)) MiB"
echo "peer (shared/reference/baselines.md, LiteLLM 1.108.7, 1 worker): 98 req/s at c=1/16/64, p50 +10.0 ms at c=1"
