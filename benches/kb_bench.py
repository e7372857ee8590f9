"""Knowledge-base ingestion throughput and retrieval quality through the server's
own API (boto3 bedrock-agent / bedrock-agent-runtime), on a BEIR-format dataset
directory (corpus.jsonl, queries.jsonl, qrels/test.tsv), e.g. SciFact from
https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip.

    python benches/kb_bench.py URL KEY_JSON DATASET_DIR WORK_DIR [MAX_DOCS]

KEY_JSON is what `basalt keys create --json` prints.

WORK_DIR must be under the server's allowed local paths. Each corpus document
(title + text) becomes one file, ingested with chunking NONE (BEIR judges whole
documents). It prints:
- ingestion: documents/s and chunks/s of the ingestion job, and the share of that
  time the embedding alone takes (the same texts through /v1/embeddings, 32 a call,
  as ingestion batches them);
- quality (when qrels exist): nDCG@10 of KEYWORD (BM25 alone), SEMANTIC (vectors)
  and HYBRID (reciprocal-rank fusion) over the test queries.
"""
import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

EMBED = "sentence-transformers.all-minilm-l6-v2-v1:0"


def load_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def ndcg_at_10(ranked, relevant):
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def embed(url, token, texts):
    request = urllib.request.Request(
        f"{url}/v1/embeddings", data=json.dumps({"model": EMBED, "input": texts}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        raise SystemExit(f"/v1/embeddings answered {e.code}: {e.read().decode(errors='replace')}")


def main(url, key_json, dataset, work, max_docs=None):
    key = json.loads(Path(key_json).read_text()) if Path(key_json).is_file() else json.loads(key_json)
    cfg = Config(retries={"total_max_attempts": 1}, read_timeout=3600)
    make = lambda s: boto3.client(s, endpoint_url=url, region_name="us-east-1",  # noqa: E731
                                  aws_access_key_id=key["access_key_id"],
                                  aws_secret_access_key=key["secret_access_key"], config=cfg)
    agent, rt = make("bedrock-agent"), make("bedrock-agent-runtime")
    corpus = load_jsonl(Path(dataset) / "corpus.jsonl")
    if max_docs:
        corpus = corpus[: int(max_docs)]
    folder = Path(work) / "corpus"
    folder.mkdir(parents=True, exist_ok=True)
    texts = []
    for doc in corpus:
        text = (doc.get("title", "") + "\n\n" + doc.get("text", "")).strip()
        (folder / f"{doc['_id']}.txt").write_text(text)
        texts.append(text)
    kb = agent.create_knowledge_base(
        name=f"bench-{int(time.time())}", roleArn="arn:aws:iam::000000000000:role/bench",
        knowledgeBaseConfiguration={"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
            "embeddingModelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{EMBED}"}},
        storageConfiguration={"type": "BASALT_EMBEDDED"})["knowledgeBase"]["knowledgeBaseId"]
    ds = agent.create_data_source(
        knowledgeBaseId=kb, name="corpus",
        dataSourceConfiguration={"type": "S3", "s3Configuration": {"bucketArn": folder.as_uri() + "/"}},
        vectorIngestionConfiguration={"chunkingConfiguration": {"chunkingStrategy": "NONE"}},
    )["dataSource"]["dataSourceId"]
    started = time.perf_counter()
    job = agent.start_ingestion_job(knowledgeBaseId=kb, dataSourceId=ds)["ingestionJob"]
    while job["status"] not in ("COMPLETE", "FAILED", "STOPPED"):
        time.sleep(0.5)
        job = agent.get_ingestion_job(knowledgeBaseId=kb, dataSourceId=ds,
                                      ingestionJobId=job["ingestionJobId"])["ingestionJob"]
    ingest_s = time.perf_counter() - started
    stats = job["statistics"]
    indexed = stats["numberOfNewDocumentsIndexed"]
    chunks = indexed  # chunking NONE: one chunk per document
    started = time.perf_counter()
    # The model reads at most 512 tokens of a chunk; 8,000 characters cover them and
    # keep every call under the server's body limit.
    clipped = [t[:8000] for t in texts]
    for i in range(0, len(clipped), 32):
        embed(url, key["bearer_token"], clipped[i:i + 32])
    embed_s = time.perf_counter() - started
    print(f"ingestion: {indexed} documents ({chunks} chunks) in {ingest_s:.1f} s = "
          f"{indexed / ingest_s:.1f} docs/s, {chunks / ingest_s:.1f} chunks/s; "
          f"embedding alone {embed_s:.1f} s ({100 * embed_s / ingest_s:.0f} % of the job); "
          f"failed {stats['numberOfDocumentsFailed']}")
    # The peer: sentence-transformers embedding the same texts (embedding only — it
    # has no parsing, storage or index to build), when ST_PYTHON names its python.
    st_python, model_dir = os.environ.get("ST_PYTHON"), os.environ.get("ST_MODEL_DIR")
    if st_python and model_dir:
        texts_file = Path(work) / "texts.json"
        texts_file.write_text(json.dumps(clipped))
        st_s = float(subprocess.check_output(
            [st_python, str(Path(__file__).with_name("st_encode.py")), model_dir, str(texts_file),
             os.environ.get("THREADS", "2")], env=dict(os.environ, HF_HUB_OFFLINE="1")).decode().split()[-1])
        print(f"peer: sentence-transformers embedded the same {len(clipped)} texts in {st_s:.1f} s = "
              f"{len(clipped) / st_s:.1f} docs/s; Basalt's whole ingestion is "
              f"{(indexed / ingest_s) / (len(clipped) / st_s):.2f}x its embedding alone")
    qrels_path = Path(dataset) / "qrels" / "test.tsv"
    if not qrels_path.exists():
        return
    qrels = {}
    for line in qrels_path.read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    queries = {q["_id"]: q["text"] for q in load_jsonl(Path(dataset) / "queries.jsonl") if q["_id"] in qrels}
    for mode in ("KEYWORD", "SEMANTIC", "HYBRID"):
        scores, times = [], []
        for qid, text in queries.items():
            t = time.perf_counter()
            results = rt.retrieve(knowledgeBaseId=kb, retrievalQuery={"text": text[:1000]},
                                  retrievalConfiguration={"vectorSearchConfiguration": {
                                      "numberOfResults": 10, "overrideSearchType": mode}})["retrievalResults"]
            times.append(time.perf_counter() - t)
            ranked = [Path(r["location"]["s3Location"]["uri"]).stem for r in results]
            scores.append(ndcg_at_10(ranked, qrels[qid]))
        times.sort()
        print(f"quality {mode:8} nDCG@10={sum(scores) / len(scores):.3f} over {len(scores)} queries; "
              f"Retrieve p50 {1000 * times[len(times) // 2]:.1f} ms")


if __name__ == "__main__":
    main(*sys.argv[1:])
