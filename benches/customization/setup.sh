#!/usr/bin/env bash
# Creates benches/customization/.venv with the pinned PEFT + PyTorch (CPU) set of
# requirements.txt, from PyPI only. Idempotent: skips when the stamp in the venv matches
# the hash of requirements.txt, this script and the mode.
#
# PyPI's Linux torch is the CUDA build, which needs the NVIDIA libraries to load, even on
# the CPU (see requirements.txt). By default torch is installed without them, and small
# stand-in libraries with their sonames are built (needs gcc and readelf) into torch/lib,
# the last folder of torch's RUNPATH, so real NVIDIA wheels would still win if installed.
# Every stand-in function returns 100 (cudaErrorNoDevice; the error-string ones a message):
# torch.cuda.is_available() is False, and nothing on the CPU path calls them.
# TORCH_CUDA_WHEELS=1 installs the stock NVIDIA wheels and triton instead (about 5.3 GB in
# all, no stand-ins).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
MODE="${TORCH_CUDA_WHEELS:+cuda-wheels}"; MODE="${MODE:-stubs}"
STAMP="$VENV/.setup-stamp"
HASH="$(cat "$HERE/requirements.txt" "$HERE/setup.sh" | sha256sum | cut -c1-16)-$MODE"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  echo "setup: $VENV is up to date ($HASH)"; exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install --quiet --no-deps -r "$HERE/requirements.txt"
if [ "$MODE" = cuda-wheels ]; then
  # Same torch, now with the dependencies its metadata declares.
  "${PIP[@]}" install --quiet "$(grep '^torch==' "$HERE/requirements.txt")"
else
  "$VENV/bin/python" - <<'EOF'
"""Build do-nothing stand-ins for the CUDA libraries that torch's libraries link."""
import glob, os, re, shutil, subprocess, sysconfig, tempfile

lib = os.path.join(sysconfig.get_paths()["purelib"], "torch", "lib")
objs = glob.glob(f"{lib}/*.so*") + glob.glob(f"{lib}/../_C*.so")
run = lambda *a: subprocess.run(a, capture_output=True, text=True, check=True).stdout
CUDA = re.compile(r"(__cuda|cu[A-Z]|cuda|cublas|cudnn|cufft|cufile|cupti|curand|cusolver|cusparse|nccl|nvrtc|nvshmem)")
STRING = re.compile(r"(ErrorString|ErrorName|StatusString|StatusName)$|^ncclGetLastError$")
system = run("ldconfig", "-p")
needed, version_file, undefined = set(), {}, {}
for obj in objs:
    needed |= set(re.findall(r"\(NEEDED\).*\[(.+)\]", run("readelf", "-dW", obj)))
    file = None
    for line in run("readelf", "-VW", obj).splitlines():  # version name -> library
        if m := re.search(r"File: (\S+)", line):
            file = m.group(1)
        elif (m := re.search(r"Name: (\S+)", line)) and file:
            version_file[m.group(1)] = file
    for line in run("readelf", "--dyn-syms", "-W", obj).splitlines():
        f = line.split()
        if len(f) >= 8 and f[6] == "UND" and f[4] == "GLOBAL":
            name, _, version = f[7].partition("@")
            if CUDA.match(name):
                undefined[name] = (version.lstrip("@").split(" ")[0], f[3])
listing = f"{lib}/CUDA_STAND_INS"  # ours from an earlier run, rebuilt
ours = open(listing).read().split() if os.path.exists(listing) else []
missing = sorted(n for n in needed
                 if (n in ours or not os.path.exists(f"{lib}/{n}")) and f"{n} " not in system)
if not missing:
    print("setup: no CUDA stand-ins needed")
    raise SystemExit(0)
symbols = {n: {} for n in missing}  # library -> {symbol: (version, type)}
# Unversioned references bind to any library loaded: they go to libcudart's stand-in.
cudart = next((n for n in missing if n.startswith("libcudart.")), missing[0])
for name, (version, kind) in undefined.items():
    owner = version_file.get(version, cudart) if version else cudart
    symbols[owner if owner in symbols else cudart][name] = (version, kind)
tmp = tempfile.mkdtemp(prefix="cuda-stand-ins-")
for so, syms in symbols.items():
    src, script = f"{tmp}/{so}.c", f"{tmp}/{so}.map"
    with open(src, "w") as f:
        f.write('static const char *msg = "no GPU: CUDA stand-in (benches/customization/setup.sh)";\n')
        for name, (_, kind) in sorted(syms.items()):
            if kind == "OBJECT":
                f.write(f"char {name}[64];\n")
            elif name in ("cuGetErrorString", "cuGetErrorName"):  # (CUresult, const char **)
                f.write(f"int {name}(int e, const char **s) {{ if (s) *s = msg; return 0; }}\n")
            elif STRING.search(name):  # callers print these: a real string, not 100
                f.write(f"const char *{name}(void) {{ return msg; }}\n")
            else:
                f.write(f"int {name}(void) {{ return 100; }}\n")
    by_version = {}
    for name, (version, _) in syms.items():
        if version:
            by_version.setdefault(version, []).append(name)
    args = ["gcc", "-shared", "-fPIC", "-o", f"{lib}/{so}", src, f"-Wl,-soname,{so}"]
    if by_version:
        with open(script, "w") as f:
            f.writelines(f"{v} {{ global: {'; '.join(n)}; }};\n" for v, n in by_version.items())
        args.append(f"-Wl,--version-script={script}")
    subprocess.run(args, check=True)
shutil.rmtree(tmp)
open(listing, "w").write("\n".join(sorted(symbols)) + "\n")
print(f"setup: built {len(symbols)} CUDA stand-ins in {lib}: {' '.join(sorted(symbols))}")
EOF
fi
"$VENV/bin/python" -c 'import torch, transformers, peft
x = torch.randn(2, 2) @ torch.randn(2, 2)
print(f"setup: torch {torch.__version__} (cuda available: {torch.cuda.is_available()}), "
      f"transformers {transformers.__version__}, peft {peft.__version__}: ok")'
echo "$HASH" > "$STAMP"
