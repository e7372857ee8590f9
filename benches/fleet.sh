#!/usr/bin/env bash
# A fleet's overhead, side by side in one run, on one machine: proxy requests (to an
# nginx upstream that answers at once) through
#   1. one node on SQLite (the embedded default),
#   2. one node on PostgreSQL,
#   3. one node on PostgreSQL behind an nginx load balancer,
#   4. three nodes on one PostgreSQL behind that balancer,
# each with a key without limits and a key with a requests-per-minute quota (shares
# claimed in the store); then local-engine requests (SmolLM2) on one node and on three
# behind the balancer; then the store's write rates (metering rows, quota claims) for
# the 100-node arithmetic in benches/README.md. On a 2-core machine the fleet ratios
# measure overhead (every process shares the same cores), not scale.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
install_python_clients
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
apt_install "${missing[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
build_release
fetch_models
log "building the store's write-rate example"
(cd "$REPO" && cargo build --release --locked --quiet -p basalt-store --example write_rate)
DURATION="${DURATION:-20s}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx.conf" -s stop 2>/dev/null || true
  exec 3>&- 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "starting PostgreSQL"
mkfifo "$WORK/pg-hold"
"$VENV/bin/python" "$REPO/scripts/pg_server.py" --temporary "$WORK/pg" < "$WORK/pg-hold" > "$WORK/pg.uri" 2>"$WORK/pg.log" &
exec 3>"$WORK/pg-hold"
for _ in $(seq 300); do [ -s "$WORK/pg.uri" ] && break; sleep 0.1; done
STORE_URL="$(head -n1 "$WORK/pg.uri")"
[ -n "$STORE_URL" ] || { cat "$WORK/pg.log" >&2; exit 1; }

UPORT=$(free_port); LBPORT=$(free_port); LB1PORT=$(free_port)
P=(); for i in 0 1 2 3; do P+=("$(free_port)"); done   # P[0]: SQLite node; P[1..3]: fleet
COMPLETION='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"I am fine, thank you."},"finish_reason":"stop"}],"usage":{"prompt_tokens":21,"completion_tokens":7,"total_tokens":28}}'
mkdir -p "$WORK/nginx/logs"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
error_log $WORK/nginx/logs/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/body;
  upstream fleet { server 127.0.0.1:${P[1]}; server 127.0.0.1:${P[2]}; server 127.0.0.1:${P[3]}; keepalive 64; }
  upstream one { server 127.0.0.1:${P[1]}; keepalive 64; }
  server {
    listen 127.0.0.1:$UPORT;
    location = /v1/chat/completions { default_type application/json; return 200 '$COMPLETION'; }
  }
  server {
    listen 127.0.0.1:$LBPORT;
    location / { proxy_pass http://fleet; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
  server {
    listen 127.0.0.1:$LB1PORT;
    location / { proxy_pass http://one; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
NGINX
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx.conf"

models_toml() {
  cat "$REPO/config/basalt.toml"
  cat <<TOML

[[models]]
id = "openai.bench-upstream-v1:0"
name = "fixed upstream"
provider = "OpenAI"
engine = "remote"
native_body = "meta-llama"
input_modalities = ["TEXT"]
output_modalities = ["TEXT"]
streaming = true
lifecycle = { status = "ACTIVE" }
price = { input_per_1k = 0.001, output_per_1k = 0.002 }
upstream = { api = "openai", base_url = "http://127.0.0.1:$UPORT/v1", model = "bench" }
TOML
}
models_toml > "$WORK/sqlite.toml"
{ models_toml; printf '\n[store]\nurl = "%s"\n' "$STORE_URL"; } > "$WORK/fleet.toml"

start_node() { # port config data-dir
  "$BASALT_BIN" serve --config "$2" --data-dir "$3" --models-dir "$BASALT_MODELS_DIR" \
    --listen "127.0.0.1:$1" > "$3.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.2; done
  log "a node did not start:"; cat "$3.log" >&2; exit 1
}
log "starting one node on SQLite and three on PostgreSQL"
start_node "${P[0]}" "$WORK/sqlite.toml" "$WORK/sqlite-node"
start_node "${P[1]}" "$WORK/fleet.toml" "$WORK/node1"
for i in 2 3; do
  mkdir -p "$WORK/node$i" && cp "$WORK/node1/master.key" "$WORK/node$i/master.key"
  start_node "${P[$i]}" "$WORK/fleet.toml" "$WORK/node$i"
done
key() { # config data-dir name [--rpm N]
  BASALT_CONFIG="$1" "$BASALT_BIN" keys create --data-dir "$2" --name "$3" --json "${@:4}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["bearer_token"])'
}
SQ_FREE=$(key "$WORK/sqlite.toml" "$WORK/sqlite-node" free)
SQ_QUOTA=$(key "$WORK/sqlite.toml" "$WORK/sqlite-node" quota --rpm 100000000)
PG_FREE=$(key "$WORK/fleet.toml" "$WORK/node1" free)
PG_QUOTA=$(key "$WORK/fleet.toml" "$WORK/node1" quota --rpm 100000000)

run() { # name url token conc
  local out
  out=$(PROXY_MODEL="openai.bench-upstream-v1:0" PROXY_TOKEN="$3" wrk -t2 -c"$4" -d"$DURATION" --latency \
    -s "$REPO/benches/proxy_chat.lua" "$2")
  if grep -q "Non-2xx" <<<"$out"; then echo "$1 c=$4: non-2xx responses"; echo "$out"; exit 1; fi
  printf '%-44s %5s %10s %9s %9s\n' "$1" "$4" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")"
}
echo
printf '%-44s %5s %10s %9s %9s\n' "proxy /v1/chat/completions" "conc" "req/s" "p50" "p99"
for c in 16 64; do
  run "1 node, SQLite, key without limits" "http://127.0.0.1:${P[0]}" "$SQ_FREE" $c
  run "1 node, SQLite, key with an rpm quota" "http://127.0.0.1:${P[0]}" "$SQ_QUOTA" $c
  run "1 node, PostgreSQL, key without limits" "http://127.0.0.1:${P[1]}" "$PG_FREE" $c
  run "1 node, PostgreSQL, key with an rpm quota" "http://127.0.0.1:${P[1]}" "$PG_QUOTA" $c
  run "1 node, PostgreSQL, via nginx" "http://127.0.0.1:$LB1PORT" "$PG_FREE" $c
  run "3 nodes, PostgreSQL, via nginx" "http://127.0.0.1:$LBPORT" "$PG_FREE" $c
  run "3 nodes, PostgreSQL, via nginx, rpm quota" "http://127.0.0.1:$LBPORT" "$PG_QUOTA" $c
done
echo
echo "local engine (SmolLM2-135M, 16 new tokens a request, 4 at once), ${DURATION}:"
for target in "1 node:http://127.0.0.1:$LB1PORT" "3 nodes:http://127.0.0.1:$LBPORT"; do
  name=${target%%:*}; url=${target#*:}
  "$VENV/bin/python" - "$name" "$url" "$PG_FREE" "${DURATION%s}" <<'PY'
import json, sys, threading, time, urllib.request
name, url, token, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
body = json.dumps({"model": "huggingfacetb.smollm2-135m-instruct-v1:0", "max_tokens": 16, "temperature": 0,
                   "messages": [{"role": "user", "content": "Name three rivers of Europe."}]}).encode()
done, tokens, latencies, lock = [0], [0], [], threading.Lock()
stop = time.monotonic() + seconds
def worker():
    while time.monotonic() < stop:
        started = time.monotonic()
        req = urllib.request.Request(url + "/v1/chat/completions", body, {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        out = json.load(urllib.request.urlopen(req, timeout=120))
        with lock:
            done[0] += 1; tokens[0] += out["usage"]["completion_tokens"]; latencies.append(time.monotonic() - started)
threads = [threading.Thread(target=worker) for _ in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
latencies.sort()
print(f"  {name:<8} {done[0] / seconds:6.2f} req/s  {tokens[0] / seconds:7.1f} tok/s  p50 {latencies[len(latencies) // 2] * 1000:6.0f} ms")
PY
done
echo
echo "store write rates (4 writers, 5 s each):"
"$CARGO_TARGET_DIR/release/examples/write_rate" "$STORE_URL" 5 4 | sed 's/^/  PostgreSQL: /'
"$CARGO_TARGET_DIR/release/examples/write_rate" "$WORK/write-rate.db" 5 4 | sed 's/^/  SQLite:     /'
echo
for i in 1 2 3; do echo "node $i RSS: $(( $(ps -o rss= -p "${PIDS[$i]}") / 1024 )) MiB"; done
