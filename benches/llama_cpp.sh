# Shared by the benchmarks: llama.cpp's own tools, built from the llama.cpp tree in the
# pinned llama-cpp-python sdist on PyPI (the llama-cpp-sys-2 crate ships only the
# library), with GGML_NATIVE=ON and the same compiler and flags as Basalt's llama.cpp
# (clang with AMX on CPUs that have it, see configure_native_toolchain in lib.sh).
# Source it after lib.sh and call it after build_release.
LCP_VERSION=0.3.36

# Prints the path of the built tool (llama-bench, llama-server, ...).
llama_cpp_tool() {
  local tool=$1 workdir="$REPO/benches/.work"
  local src="$workdir/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp"
  local cc="${CC:-cc}" cxx="${CXX:-c++}"
  local cflags="${CFLAGS--mno-amx-tile -mno-amx-int8 -mno-amx-bf16}" cxxflags="${CXXFLAGS--mno-amx-tile -mno-amx-int8 -mno-amx-bf16}"
  local build="$workdir/llama-cpp-build-$(basename "$cc")"
  if [ ! -d "$src" ]; then
    log "fetching llama-cpp-python==$LCP_VERSION sdist (vendored llama.cpp)"
    mkdir -p "$workdir"
    python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$LCP_VERSION" -d "$workdir" >&2
    tar xzf "$workdir/llama_cpp_python-$LCP_VERSION.tar.gz" -C "$workdir"
  fi
  if [ ! -x "$build/bin/$tool" ]; then
    log "building $tool"
    CC="$cc" CXX="$cxx" CFLAGS="$cflags" CXXFLAGS="$cxxflags" \
      cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >/dev/null
    cmake --build "$build" --target "$tool" -j "$(nproc)" >/dev/null
  fi
  echo "$build/bin/$tool"
}
