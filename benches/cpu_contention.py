"""Decode speed beside a CPU-bound neighbour, and chat beside a knowledge-base
ingestion (issue 22, item 2). Driven by benches/cpu_contention.sh.

    python benches/cpu_contention.py decode URL [BEARER]
        decode tok/s of one streamed chat completion at a time (OpenAI wire, the same
        client for Basalt and llama-server): median over REPEATS requests.
    python benches/cpu_contention.py train URL KEY_JSON WORK_DIR
        decode tok/s of streamed chat requests while a LoRA fine-tuning job trains.
    python benches/cpu_contention.py ingest URL KEY_JSON WORK_DIR [--with-chat]
        3,000 short documents ingested into a new knowledge base (documents/s); with
        --with-chat, streamed chat requests run one after another for the whole
        ingestion and their decode tok/s is reported beside it.

Decode rate as benches/chat_stream.py measures it (prompt processing outside the
window). Every figure is printed as one JSON line.
"""
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path

from chat_stream import MODEL, stream_chat
EMBED = "sentence-transformers.all-minilm-l6-v2-v1:0"
PROMPT = "Write a very long story about a lighthouse keeper and the sea. Use many details."


def stream_decode_rate(url, bearer, max_tokens=128):
    """One streamed completion; its decode tok/s (None when too short to time)."""
    _, _, rate, tokens = stream_chat(url, bearer, PROMPT, max_tokens)
    return rate if tokens >= 8 and rate > 0 else None


def decode(url, bearer=None):
    repeats = int(__import__("os").environ.get("REPEATS", "5"))
    stream_decode_rate(url, bearer, 16)  # warm: the prompt is in the KV cache after this
    rates = [r for r in (stream_decode_rate(url, bearer) for _ in range(repeats)) if r]
    print(json.dumps({"decode_tok_s": statistics.median(rates), "runs": rates}))


WORDS = ("river stone harbour lantern copper meadow signal orchard ledger basalt "
         "granite valley engine quarry winter summer beacon forest island market "
         "bridge tunnel garden archive station compass anchor thunder silver amber").split()


def documents(folder, count=3000):
    rng = random.Random(7)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(25, 45))]
        (folder / f"doc-{i:05}.txt").write_text(f"Note {i}. " + " ".join(words) + ".\n")


def ingest(url, key_json, work, with_chat=""):
    import boto3
    from botocore.config import Config

    key = json.loads(Path(key_json).read_text())
    agent = boto3.client(
        "bedrock-agent", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"],
        config=Config(retries={"total_max_attempts": 1}, read_timeout=600))
    folder = Path(work) / f"docs-{int(time.time() * 1000)}"
    documents(folder)
    kb = agent.create_knowledge_base(
        name=f"contention-{folder.name}", roleArn="arn:aws:iam::000000000000:role/bench",
        knowledgeBaseConfiguration={"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
            "embeddingModelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{EMBED}"}},
        storageConfiguration={"type": "BASALT_EMBEDDED"})["knowledgeBase"]["knowledgeBaseId"]
    ds = agent.create_data_source(
        knowledgeBaseId=kb, name="docs",
        dataSourceConfiguration={"type": "S3", "s3Configuration": {"bucketArn": folder.as_uri() + "/"}},
        vectorIngestionConfiguration={"chunkingConfiguration": {"chunkingStrategy": "NONE"}},
    )["dataSource"]["dataSourceId"]
    done = threading.Event()
    rates = []

    def chat_loop():
        while not done.is_set():
            rate = stream_decode_rate(url, key["bearer_token"])
            if rate and not done.is_set():
                rates.append(rate)

    chat = threading.Thread(target=chat_loop) if with_chat else None
    if chat:
        chat.start()
        time.sleep(1.0)  # the chat loop is decoding when the ingestion starts
    started = time.perf_counter()
    job = agent.start_ingestion_job(knowledgeBaseId=kb, dataSourceId=ds)["ingestionJob"]
    while job["status"] not in ("COMPLETE", "FAILED", "STOPPED"):
        time.sleep(0.2)
        job = agent.get_ingestion_job(knowledgeBaseId=kb, dataSourceId=ds,
                                      ingestionJobId=job["ingestionJobId"])["ingestionJob"]
    elapsed = time.perf_counter() - started
    done.set()
    if chat:
        chat.join()
    indexed = job["statistics"]["numberOfNewDocumentsIndexed"]
    result = {"status": job["status"], "documents": indexed, "seconds": elapsed,
              "docs_per_s": indexed / elapsed}
    if with_chat:
        result["chat_decode_tok_s"] = statistics.median(rates) if rates else 0.0
        result["chat_requests"] = len(rates)
    print(json.dumps(result))


def train(url, key_json, work):
    """Chat decode while a LoRA fine-tuning job trains on the same server."""
    import boto3
    from botocore.config import Config

    key = json.loads(Path(key_json).read_text())
    control = boto3.client(
        "bedrock", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"],
        config=Config(retries={"total_max_attempts": 1}, read_timeout=600))
    folder = Path(work) / f"train-{int(time.time() * 1000)}"
    folder.mkdir(parents=True)
    rng = random.Random(3)
    with open(folder / "train.jsonl", "w") as f:
        for i in range(400):
            words = " ".join(rng.choice(WORDS) for _ in range(12))
            f.write(json.dumps({"prompt": f"Describe item {i}.", "completion": f"Item {i}: {words}."}) + "\n")
    arn = control.create_model_customization_job(
        jobName=f"contention-{folder.name}", customModelName=f"cm-{folder.name}",
        roleArn="arn:aws:iam::000000000000:role/bench", baseModelIdentifier=MODEL,
        customizationType="FINE_TUNING", trainingDataConfig={"s3Uri": f"file://{folder}/train.jsonl"},
        outputDataConfig={"s3Uri": f"file://{folder}/out/"},
        hyperParameters={"epochCount": "2", "batchSize": "1"})["jobArn"]
    training = lambda: ((control.get_model_customization_job(jobIdentifier=arn).get("statusDetails") or {})  # noqa: E731
                        .get("trainingDetails") or {}).get("status") == "InProgress"
    deadline = time.monotonic() + 120
    while not training():
        assert time.monotonic() < deadline, "the training job did not start training"
        time.sleep(0.2)
    time.sleep(1.0)
    rates = []
    for _ in range(int(__import__("os").environ.get("REPEATS", "5"))):
        rate = stream_decode_rate(url, key["bearer_token"])
        if rate:
            rates.append(rate)
    still = training()
    control.stop_model_customization_job(jobIdentifier=arn)
    print(json.dumps({"decode_tok_s": statistics.median(rates), "runs": rates,
                      "training_throughout": still}))


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"decode": decode, "ingest": ingest, "train": train}[mode](*args)
