"""Real sentence embeddings for benches/kb_ann_real.sh: sentences from this machine's
Debian copyright files (/usr/share/doc/*/copyright) and the docstrings of Python's
standard library (6 to 60 words, deduplicated, in a fixed order), embedded with
all-MiniLM-L6-v2 through the server's /v1/embeddings, 64 a call. Every 300th sentence
is held out as a query (300 of them); the rest, up to N, are the base. Writes
base.f32 and queries.f32 (raw little-endian float32, 384 a row) into OUT_DIR.

    python benches/kb_ann_corpus.py URL KEY_JSON OUT_DIR N
"""
import ast
import json
import pathlib
import re
import struct
import sys
import sysconfig
import time
import urllib.request

EMBED = "sentence-transformers.all-minilm-l6-v2-v1:0"


def sentences():
    seen, out = set(), []

    def add(text):
        for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text)):
            if 6 <= len(s.split()) <= 60 and s not in seen:
                seen.add(s)
                out.append(s)

    for p in sorted(pathlib.Path("/usr/share/doc").glob("*/copyright")):
        add(p.read_text(errors="replace"))
    for p in sorted(pathlib.Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            tree = ast.parse(p.read_text(errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    add(doc)
    return out


def embed(url, token, texts):
    request = urllib.request.Request(
        f"{url}/v1/embeddings", data=json.dumps({"model": EMBED, "input": texts}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return [row["embedding"] for row in json.load(response)["data"]]


def write(path, texts, url, token):
    started, done = time.time(), 0
    with open(path, "wb") as f:
        for i in range(0, len(texts), 64):
            for vector in embed(url, token, texts[i:i + 64]):
                f.write(struct.pack(f"<{len(vector)}f", *vector))
            done += len(texts[i:i + 64])
            if done % 6400 == 0:
                print(f"  embedded {done}/{len(texts)} ({done / (time.time() - started):.0f}/s)", flush=True)


def main(url, key_json, out_dir, n):
    token = json.loads(pathlib.Path(key_json).read_text())["bearer_token"]
    corpus = sentences()
    queries = corpus[::300][:300]
    held = set(queries)
    base = [s for s in corpus if s not in held][:n]
    print(f"{len(corpus)} sentences: {len(base)} base, {len(queries)} queries", flush=True)
    write(f"{out_dir}/queries.f32", queries, url, token)
    write(f"{out_dir}/base.f32", base, url, token)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
