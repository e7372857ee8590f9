"""sentence-transformers encoding the same texts Basalt ingests, for the ingestion
benchmark's peer column (benches/kb_bench.py runs it with ST_PYTHON):

    python st_encode.py MODEL_DIR TEXTS_JSON THREADS

The model files are the ones Basalt serves (all-MiniLM-L6-v2 from the pinned wheel),
read at 512 tokens as Basalt reads them (sentence-transformers' default for this model
is 256), in batches of 32 on THREADS CPU threads. Prints the seconds the encoding took.
"""
import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

model_dir, texts_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
texts = json.load(open(texts_path))
model = SentenceTransformer(model_dir, device="cpu")
model.max_seq_length = 512
model.encode(texts[:64], batch_size=32)  # warm-up
started = time.perf_counter()
model.encode(texts, batch_size=32, normalize_embeddings=True)
print(f"{time.perf_counter() - started:.3f}")
