#!/usr/bin/env bash
# Basalt /v1/embeddings vs sentence-transformers on the same model files, same threads
# (benches/embeddings.py), then the parity check (benches/embedding_parity.py).
# sentence-transformers goes into its own venv under benches/.work (torch is large:
# several GB with its CUDA wheels, which PyPI's default torch pulls in).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
install_system_packages
build_release
fetch_models
ST_VENV="${ST_VENV:-$REPO/benches/.work/st-venv}"
if [ ! -x "$ST_VENV/bin/python" ]; then
  log "creating $ST_VENV with sentence-transformers==6.2.0"
  python3 -m venv "$ST_VENV"
  "$ST_VENV/bin/pip" install --quiet --disable-pip-version-check sentence-transformers==6.2.0
fi
WORK="$(mktemp -d)"
trap 'kill $BASALT 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(free_port)
sed -e "s/^threads = .*/threads = ${THREADS:-2}/" -e "s/^embedding_batch = [0-9]*/embedding_batch = ${EMBEDDING_BATCH:-1}/" "$REPO/config/basalt.toml" > "$WORK/basalt.toml"
BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" serve --config "$WORK/basalt.toml" --listen "127.0.0.1:$PORT" \
  --models-dir "$BASALT_MODELS_DIR" > "$WORK/basalt.log" 2>&1 &
BASALT=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
TOKEN=$(BASALT_DATA_DIR="$WORK/data" "$BASALT_BIN" keys create --name bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bearer_token"])')
export HF_HUB_OFFLINE=1
"$ST_VENV/bin/python" "$REPO/benches/embeddings.py" "http://127.0.0.1:$PORT" "$TOKEN" "$BASALT_MODELS_DIR/all-minilm-l6-v2"
"$ST_VENV/bin/python" "$REPO/benches/embedding_parity.py" "http://127.0.0.1:$PORT" "$TOKEN" "$BASALT_MODELS_DIR/all-minilm-l6-v2"
