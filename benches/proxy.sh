#!/usr/bin/env bash
# Proxy overhead, side by side in one run: an upstream that answers at once (nginx
# returning a fixed chat.completion), then the same wrk load against nginx directly,
# Basalt's /v1/chat/completions and Bedrock Converse proxying to it (auth and metering
# on), and LiteLLM proxying to it (one worker, from PyPI in its own venv, offline).
# Load generator, proxies and upstream share the machine's cores.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
build_release
# The floor: Basalt's HTTP stack with none of Basalt's work (benches/relay).
RELAY_TARGET="${RELAY_TARGET:-$HOME/.cache/basalt/relay-target}"
log "building benches/relay"
CARGO_TARGET_DIR="$RELAY_TARGET" cargo build --release --locked --quiet --manifest-path "$REPO/benches/relay/Cargo.toml"
RELAY_BIN="$RELAY_TARGET/release/bench-relay"
LITELLM_VERSION=1.108.7
LITELLM_VENV="${LITELLM_VENV:-$REPO/benches/.work/litellm-venv}"
if [ ! -x "$LITELLM_VENV/bin/litellm" ]; then
  log "installing litellm[proxy]==$LITELLM_VERSION into $LITELLM_VENV"
  python3 -m venv "$LITELLM_VENV"
  "$LITELLM_VENV/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
fi
DURATION="${DURATION:-30s}"
WORK="$(mktemp -d)"
BASALT=; LITELLM=; RELAY=
trap 'kill $BASALT $LITELLM $RELAY 2>/dev/null || true; "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$WORK"' EXIT
NPORT=$(free_port); BPORT=$(free_port); LPORT=$(free_port); RPORT=$(free_port)

COMPLETION='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"I am fine, thank you."},"finish_reason":"stop"}],"usage":{"prompt_tokens":21,"completion_tokens":7,"total_tokens":28}}'
mkdir -p "$WORK/nginx/logs"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
error_log $WORK/nginx/logs/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/body;
  server {
    listen 127.0.0.1:$NPORT;
    location = /v1/chat/completions {
      default_type application/json;
      return 200 '$COMPLETION';
    }
  }
}
NGINX
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx.conf"

cat > "$WORK/basalt.toml" <<TOML
region = "us-east-1"
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
upstream = { api = "openai", base_url = "http://127.0.0.1:$NPORT/v1", model = "bench" }
TOML
BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" serve --config "$WORK/basalt.toml" --listen "127.0.0.1:$BPORT" > "$WORK/basalt.log" 2>&1 &
BASALT=$!

cat > "$WORK/litellm.yaml" <<YAML
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://127.0.0.1:$NPORT/v1
      api_key: not-checked
general_settings:
  master_key: sk-bench-master
YAML
LITELLM_LOCAL_MODEL_COST_MAP=True "$LITELLM_VENV/bin/litellm" --config "$WORK/litellm.yaml" \
  --host 127.0.0.1 --port "$LPORT" --num_workers 1 > "$WORK/litellm.log" 2>&1 &
LITELLM=$!
"$RELAY_BIN" --listen "127.0.0.1:$RPORT" --upstream "http://127.0.0.1:$NPORT/v1/chat/completions" \
  --threads "$(nproc)" > "$WORK/relay.log" 2>&1 &
RELAY=$!
for p in $BPORT $LPORT; do
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$p/health" && break; sleep 0.2; done
done
for _ in $(seq 100); do curl -s -o /dev/null -X POST "http://127.0.0.1:$RPORT/" && break; sleep 0.1; done
TOKEN=$(BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" keys create --name bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bearer_token"])')

run() { # name lua url model token conc
  local name=$1 lua=$2 url=$3 model=$4 token=$5 c=$6 threads out
  threads=$(( c < 2 ? 1 : 2 ))
  out=$(PROXY_MODEL="$model" PROXY_TOKEN="$token" wrk -t"$threads" -c"$c" -d"$DURATION" --latency -s "$REPO/benches/$lua" "$url")
  if grep -q "Non-2xx" <<<"$out"; then echo "$name c=$c: non-2xx responses"; echo "$out"; exit 1; fi
  printf '%-26s %5s %10s %9s %9s\n' "$name" "$c" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")"
}
printf '%-26s %5s %10s %9s %9s\n' "target" "conc" "req/s" "p50" "p99"
for c in 1 16 64; do
  run "nginx direct" proxy_chat.lua "http://127.0.0.1:$NPORT" bench "" $c
  run "bare relay -> nginx" proxy_chat.lua "http://127.0.0.1:$RPORT" bench "" $c
  run "basalt openai -> nginx" proxy_chat.lua "http://127.0.0.1:$BPORT" openai.bench-upstream-v1:0 "$TOKEN" $c
  run "basalt converse -> nginx" proxy_converse.lua "http://127.0.0.1:$BPORT" "" "$TOKEN" $c
  run "litellm -> nginx" proxy_chat.lua "http://127.0.0.1:$LPORT" bench sk-bench-master $c
done
echo "basalt RSS after the load: $(( $(ps -o rss= -p "$BASALT") / 1024 )) MiB; litellm: $(( $(ps -o rss= --ppid "$LITELLM" -p "$LITELLM" | awk '{s+=$1} END {print s}') / 1024 )) MiB"
