#!/usr/bin/env bash
# Importing a Hugging Face model folder, side by side in one run: Basalt's
# CreateModelImportJob (Rust conversion + llama.cpp's quantizer, in the server) against
# llama.cpp's own path (convert_hf_to_gguf.py from the vendored llama.cpp of the pinned
# llama-cpp-python sdist, then llama-quantize built from the same tree), on the same
# folder: the served SmolLM2-135M written by transformers (benches/customization/
# hf_model.py, f32 safetensors). Prints each side's wall time (best of ROUNDS), the
# ratio, and whether the two GGUF files hold the same tensors (types and bytes) and the
# same tokenizer metadata; then the same comparison, untimed, for a tiny Llama with a
# real SentencePiece tokenizer.model (benches/customization/spm_model.py).
# Environment: QUANT (Q8_0), ROUNDS (2), THREADS (2).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$REPO/benches/llama_cpp.sh"
QUANT="${QUANT:-Q8_0}" ROUNDS="${ROUNDS:-2}" THREADS="${THREADS:-2}"
install_system_packages
install_python_clients
build_release
fetch_models
bash "$REPO/benches/customization/setup.sh"
PY="$REPO/benches/customization/.venv/bin/python"
QUANTIZE="$(llama_cpp_tool llama-quantize)"
CONVERT="$REPO/benches/.work/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp/convert_hf_to_gguf.py"
WORK="$REPO/benches/.work/model_import"
GGUF="$BASALT_MODELS_DIR/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$WORK"
[ -f "$WORK/hf/model.safetensors" ] || "$PY" "$REPO/benches/customization/hf_model.py" --gguf "$GGUF" --out "$WORK/hf"
# A tiny Llama with a real SentencePiece BPE tokenizer.model: compared, not timed.
[ -f "$WORK/spm/tokenizer.model" ] || "$PY" "$REPO/benches/customization/spm_model.py" --out "$WORK/spm"

SERVE="$WORK/serve"
rm -rf "$SERVE" && mkdir -p "$SERVE"
{ cat "$REPO/config/basalt.toml"; printf '\n[customization]\nthreads = %s\nimport_quantization = "%s"\n' "$THREADS" "$QUANT"; } \
  > "$SERVE/basalt.toml"
start_basalt_config "$SERVE/basalt.toml" "$SERVE"
trap 'kill $BASALT 2>/dev/null || true' EXIT
# The server reads the folder from its allowed paths.
cp -r "$WORK/hf" "$SERVE/hf"
cp -r "$WORK/spm" "$SERVE/spm"
"$VENV/bin/python" "$REPO/benches/model_import.py" --url "http://127.0.0.1:$PORT" --token "$BEARER" \
  --folder "$SERVE/hf" --data "$SERVE/data" --work "$WORK" --rounds "$ROUNDS" --quant "$QUANT" --threads "$THREADS" \
  --peer-python "$PY" --convert "$CONVERT" --quantize "$QUANTIZE" --check-folder "$SERVE/spm"
