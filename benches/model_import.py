"""Import a Hugging Face folder into Basalt (CreateModelImportJob) and convert it with
llama.cpp's own tools (convert_hf_to_gguf.py + llama-quantize), alternating, ROUNDS
times; print the best wall time of each, the ratio, and whether both GGUF files hold
the same tensors and tokenizer. Run by benches/model_import.sh."""
import argparse
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "clients"))
from test_model_import import read_gguf_raw  # noqa: E402  (the tests' GGUF reader)


def call(args, method, path, body=None):
    req = urllib.request.Request(args.url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def basalt_import(args, folder=None) -> tuple[float, Path]:
    start = time.perf_counter()
    arn = call(args, "POST", "/model-import-jobs", {
        "jobName": f"bench-{uuid.uuid4().hex[:8]}", "importedModelName": f"bench-{uuid.uuid4().hex[:8]}",
        "roleArn": "arn:aws:iam::000000000000:role/bench",
        "modelDataSource": {"s3DataSource": {"s3Uri": f"file://{folder or args.folder}/"}}})["jobArn"]
    while True:
        job = call(args, "GET", "/model-import-jobs/" + urllib.request.quote(arn, safe=""))
        if job["status"] in ("Completed", "Failed"):
            break
        time.sleep(0.05)
    took = time.perf_counter() - start
    assert job["status"] == "Completed", f"the import failed: {job.get('failureMessage')}"
    model_id = job["importedModelArn"].rsplit("/", 1)[-1]
    return took, Path(args.data) / "customization" / "models" / model_id / "model.gguf"


def peer_convert(args, folder=None) -> tuple[float, Path]:
    work = Path(args.work)
    f32, out = work / "peer-f32.gguf", work / "peer.gguf"
    for p in (f32, out):
        p.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run([args.peer_python, args.convert, folder or args.folder, "--outtype", "f32", "--outfile", str(f32)],
                   check=True, capture_output=True)
    subprocess.run([args.quantize, str(f32), str(out), args.quant, str(args.threads)], check=True, capture_output=True)
    took = time.perf_counter() - start
    f32.unlink()
    return took, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("url", "token", "folder", "data", "work", "quant", "peer-python", "convert", "quantize"):
        ap.add_argument(f"--{flag}", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check-folder", action="append", default=[],
                    help="another folder converted once by each side, only to compare the files")
    args = ap.parse_args()
    times = {"llama.cpp": [], "Basalt": []}
    for _ in range(args.rounds):
        took, peer_file = peer_convert(args)
        times["llama.cpp"].append(took)
        took, basalt_file = basalt_import(args)
        times["Basalt"].append(took)
    size = sum(f.stat().st_size for f in Path(args.folder).glob("*.safetensors")) / 2**20
    print(f"folder: {args.folder} ({size:.0f} MiB of safetensors), quantization {args.quant}, {args.threads} threads")
    for side, runs in times.items():
        print(f"{side:10s} seconds {[round(t, 2) for t in runs]}")
    print(f"Basalt / llama.cpp wall time: {min(times['Basalt']) / min(times['llama.cpp']):.2f}x (lower is faster)")

    compare(peer_file, basalt_file)
    for folder in args.check_folder:
        print(f"check: {folder}")
        _, peer_file = peer_convert(args, folder)
        _, basalt_file = basalt_import(args, folder)
        compare(peer_file, basalt_file)


def compare(peer_file: Path, basalt_file: Path):
    """Prints how far Basalt's GGUF file agrees with llama.cpp's."""
    peer_meta, peer = read_gguf_raw(peer_file)
    mine_meta, mine = read_gguf_raw(basalt_file)
    same_names = sorted(peer) == sorted(mine)
    differ = [n for n in peer if n in mine and peer[n] != mine[n]]
    print(f"tensors: {len(mine)} (Basalt) vs {len(peer)} (llama.cpp); names equal: {same_names}; "
          f"equal types and bytes: {len(peer) - len(differ)} of {len(peer)}" + (f"; differ: {differ[:5]}" if differ else ""))
    keys = sorted(k for k in peer_meta if k.startswith("tokenizer."))
    bad = [k for k in keys if peer_meta[k] != mine_meta.get(k)]
    print(f"tokenizer metadata: {len(keys) - len(bad)} of {len(keys)} keys equal" + (f"; differ: {bad}" if bad else ""))
    arch = peer_meta.get("general.architecture")
    keys = sorted(k for k in peer_meta if k.startswith(f"{arch}."))
    bad = [(k, peer_meta[k], mine_meta.get(k)) for k in keys if peer_meta[k] != mine_meta.get(k)]
    print(f"{arch}.* metadata: {len(keys) - len(bad)} of {len(keys)} keys equal" + (f"; differ: {bad}" if bad else ""))


if __name__ == "__main__":
    main()
