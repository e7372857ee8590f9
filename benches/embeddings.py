"""Embedding throughput: Basalt /v1/embeddings vs sentence-transformers, same machine,
same model files, 1,000 sentences of about 40 words, batch 32, 2 threads each.

Usage: python embeddings.py ENDPOINT BEARER_TOKEN MODEL_DIR  (a Python with
sentence-transformers; see benches/README.md). Runs the two alternately, 3 rounds.
"""
import json
import random
import statistics
import sys
import time
import urllib.request

import torch
from sentence_transformers import SentenceTransformer

endpoint, token, model_dir = sys.argv[1:4]
torch.set_num_threads(2)
random.seed(7)
words = ("river stone model server token vector light harbor engine garden window signal "
         "mountain paper cloud number memory question answer network system market city music "
         "history energy planet forest winter summer ocean bridge street school doctor").split()
sentences = [" ".join(random.choice(words) for _ in range(40)) + "." for _ in range(1000)]
BATCH = 32


def basalt():
    for i in range(0, len(sentences), BATCH):
        req = urllib.request.Request(
            endpoint.rstrip("/") + "/v1/embeddings",
            data=json.dumps({"model": "sentence-transformers.all-minilm-l6-v2-v1:0",
                             "input": sentences[i:i + BATCH]}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        json.load(urllib.request.urlopen(req))


st_model = SentenceTransformer(model_dir, device="cpu")
st_model.max_seq_length = 256  # as the wheel's sentence_bert_config.json (inputs here are ~43 tokens)


def reference():
    st_model.encode(sentences, batch_size=BATCH, normalize_embeddings=True)


ours, theirs = [], []
for _ in range(3):
    t = time.perf_counter(); basalt(); ours.append(len(sentences) / (time.perf_counter() - t))
    t = time.perf_counter(); reference(); theirs.append(len(sentences) / (time.perf_counter() - t))
o, r = statistics.median(ours), statistics.median(theirs)
print(f"Basalt /v1/embeddings:  {o:7.1f} sentences/s  (runs {', '.join(f'{x:.0f}' for x in ours)})")
print(f"sentence-transformers:  {r:7.1f} sentences/s  (runs {', '.join(f'{x:.0f}' for x in theirs)})")
print(f"ratio Basalt / sentence-transformers: {o / r:.2f}  (issue 3 goal >= 2.0)")
