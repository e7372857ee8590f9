"""How keyword and vector rankings are fused in HYBRID search, measured on a BEIR
dataset through the server's API (boto3), with default chunking.

    python benches/kb_fusion.py URL KEY_JSON DATASET_DIR WORK_DIR

WORK_DIR must be under the server's allowed local paths. The corpus becomes one .txt
per document (title + text), ingested with the default chunking. For every train and
test query it retrieves SEMANTIC and KEYWORD (100 chunks each, with their scores) and
HYBRID as the server fuses it (40 chunks, as a new user would ask), deduplicated to
documents. Then, offline, it fuses the two halves in several ways and prints nDCG@10
and recall@100 on the test queries; any weight is chosen on the train queries only.
The lists are kept in WORK_DIR/lists.json (re-run with --offline to skip the server).
"""
import json
import math
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config

EMBED_ARN = "arn:aws:bedrock:us-east-1::foundation-model/sentence-transformers.all-minilm-l6-v2-v1:0"
ROLE = "arn:aws:iam::000000000000:role/bench"


def load_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_qrels(path):
    qrels = {}
    with open(path) as f:
        next(f)
        for line in f:
            qid, doc, score = line.split("\t")
            if int(score) > 0:
                qrels.setdefault(qid, {})[doc] = int(score)
    return qrels


def ndcg_at_10(ranked, relevant):
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked, relevant, k=100):
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def docs_of(results):
    """Chunks to documents: the best-scored chunk of each document, in order."""
    seen, out = set(), []
    for r in results:
        doc = Path(r["location"]["s3Location"]["uri"]).stem
        if doc not in seen:
            seen.add(doc)
            out.append((doc, r["score"]))
    return out


def collect(url, key, dataset, work):
    cfg = Config(retries={"total_max_attempts": 1}, read_timeout=3600)
    make = lambda s: boto3.client(s, endpoint_url=url, region_name="us-east-1",  # noqa: E731
                                  aws_access_key_id=key["access_key_id"],
                                  aws_secret_access_key=key["secret_access_key"], config=cfg)
    agent, runtime = make("bedrock-agent"), make("bedrock-agent-runtime")
    folder = work / "corpus"
    folder.mkdir(parents=True, exist_ok=True)
    for d in load_jsonl(dataset / "corpus.jsonl"):
        (folder / f"{d['_id']}.txt").write_text(f"{d.get('title', '')}\n\n{d['text']}")
    kb = agent.create_knowledge_base(
        name=f"fusion-{int(time.time())}", roleArn=ROLE,
        knowledgeBaseConfiguration={"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": EMBED_ARN}},
        storageConfiguration={"type": "BASALT_EMBEDDED"})["knowledgeBase"]["knowledgeBaseId"]
    ds = agent.create_data_source(knowledgeBaseId=kb, name="corpus", dataSourceConfiguration={
        "type": "S3", "s3Configuration": {"bucketArn": folder.as_uri() + "/"}})["dataSource"]["dataSourceId"]
    job = agent.start_ingestion_job(knowledgeBaseId=kb, dataSourceId=ds)["ingestionJob"]["ingestionJobId"]
    started = time.monotonic()
    while True:
        j = agent.get_ingestion_job(knowledgeBaseId=kb, dataSourceId=ds, ingestionJobId=job)["ingestionJob"]
        if j["status"] in ("COMPLETE", "FAILED", "STOPPED"):
            break
        time.sleep(1)
    print(f"ingestion {j['status']} in {time.monotonic() - started:.0f} s: {j['statistics']}", flush=True)
    queries = {q["_id"]: q["text"] for q in load_jsonl(dataset / "queries.jsonl")}
    wanted = set(load_qrels(dataset / "qrels/train.tsv")) | set(load_qrels(dataset / "qrels/test.tsv"))
    lists = {}
    for n, qid in enumerate(sorted(wanted)):
        entry = {}
        for mode, k in (("SEMANTIC", 100), ("KEYWORD", 100), ("HYBRID", 40)):
            results = runtime.retrieve(knowledgeBaseId=kb, retrievalQuery={"text": queries[qid]},
                                       retrievalConfiguration={"vectorSearchConfiguration": {
                                           "numberOfResults": k, "overrideSearchType": mode}})["retrievalResults"]
            entry[mode] = docs_of(results)
        lists[qid] = entry
        if n % 200 == 0:
            print(f"  {n}/{len(wanted)} queries", flush=True)
    (work / "lists.json").write_text(json.dumps(lists))
    return lists


def rrf(sem, kw, k=60.0):
    scores = {}
    for ranked in (sem, kw):
        for i, (doc, _) in enumerate(ranked):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + i + 1)
    return sorted(scores, key=lambda d: -scores[d])


def normalized(ranked, how):
    if not ranked:
        return {}
    values = [s for _, s in ranked]
    if how == "minmax":
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        return {d: (s - lo) / span for d, s in ranked}
    if how == "max":
        hi = max(values) or 1.0
        return {d: s / hi for d, s in ranked}
    if how == "zscore":
        mean = sum(values) / len(values)
        sd = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5 or 1.0
        return {d: (s - mean) / sd for d, s in ranked}
    raise ValueError(how)


def score_fusion(sem, kw, alpha, how, floor):
    """alpha * semantic + (1 - alpha) * keyword, each normalized; a document missing
    from one list gets that list's `floor` (0 for min-max: below its last entry)."""
    s, k = normalized(sem, how), normalized(kw, how)
    s_floor = min(s.values(), default=0.0) if floor == "min" else 0.0
    k_floor = min(k.values(), default=0.0) if floor == "min" else 0.0
    docs = set(s) | set(k)
    fused = {d: alpha * s.get(d, s_floor) + (1 - alpha) * k.get(d, k_floor) for d in docs}
    return sorted(fused, key=lambda d: -fused[d])


def evaluate(lists, qrels, rank):
    ndcg, recall = [], []
    for qid, relevant in qrels.items():
        ranked = rank(lists[qid])
        ndcg.append(ndcg_at_10(ranked, relevant))
        recall.append(recall_at(ranked, relevant))
    return sum(ndcg) / len(ndcg), sum(recall) / len(recall)


def main():
    args = [a for a in sys.argv[1:] if a != "--offline"]
    url, key_json, dataset, work = args[0], args[1], Path(args[2]), Path(args[3])
    work.mkdir(parents=True, exist_ok=True)
    if "--offline" in sys.argv:
        lists = json.loads((work / "lists.json").read_text())
    else:
        key = json.loads(Path(key_json).read_text())
        lists = collect(url, key, dataset, work)
    train, test = load_qrels(dataset / "qrels/train.tsv"), load_qrels(dataset / "qrels/test.tsv")
    docs = lambda e, m: [d for d, _ in e[m]]  # noqa: E731
    print(f"\n{len(test)} test queries, {len(train)} train queries; nDCG@10 / recall@100 (test)")
    rows = [
        ("KEYWORD (server)", lambda e: docs(e, "KEYWORD")),
        ("SEMANTIC (server)", lambda e: docs(e, "SEMANTIC")),
        ("HYBRID (server, 40 chunks)", lambda e: docs(e, "HYBRID")),
        ("RRF k=60 of the 100-lists", lambda e: rrf(e["SEMANTIC"], e["KEYWORD"])),
    ]
    for how in ("minmax", "zscore", "max"):
        for floor in ("zero", "min"):
            best = max((evaluate(lists, train, lambda e, a=a: score_fusion(e["SEMANTIC"], e["KEYWORD"], a, how, floor))[0], a)
                       for a in [i / 20 for i in range(21)])
            alpha = best[1]
            rows.append((f"{how}, missing={floor}, alpha={alpha:.2f} (train nDCG {best[0]:.3f})",
                         lambda e, a=alpha, h=how, f=floor: score_fusion(e["SEMANTIC"], e["KEYWORD"], a, h, f)))
    for name, rank in rows:
        n, r = evaluate(lists, test, rank)
        print(f"  {name:60s} {n:.3f} / {r:.3f}")


if __name__ == "__main__":
    main()
