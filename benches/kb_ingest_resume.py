"""Ingestion at scale and its resumption: DOCS small documents in a folder data source,
ingested through boto3; GetIngestionJob polled every second (statistics, the server's
resident memory from /proc); the server killed with SIGKILL when KILL_AT of the
documents are counted, started again on the same data directory, and the same job
followed to its end. Prints documents/s, peak RSS per process, and how many documents
the resumed process embedded against how many were left.

Usage: python kb_ingest_resume.py BASALT_BIN CONFIG MODELS_DIR WORK_DIR DOCS KILL_AT
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config

BIN, CONFIG, MODELS, WORK = sys.argv[1:5]
DOCS, KILL_AT = int(sys.argv[5]), float(sys.argv[6])
WORK = pathlib.Path(WORK)
EMBED = "sentence-transformers.all-minilm-l6-v2-v1:0"
SCIFACT = pathlib.Path(__file__).resolve().parents[2] / "shared/data/beir/scifact/corpus.jsonl"


def sentences():
    """SciFact's abstracts cut into sentences (or, without them, numbered filler)."""
    if SCIFACT.exists():
        for line in SCIFACT.open():
            for s in re.split(r"(?<=[.!?])\s+", json.loads(line)["text"]):
                if len(s.split()) >= 6:
                    yield s
    while True:
        yield "Sample text about rock cores and their minerals."


def write_corpus(folder: pathlib.Path) -> None:
    marker = folder.parent / "corpus-complete"
    if marker.exists() and marker.read_text() == str(DOCS):
        return
    import shutil
    shutil.rmtree(folder, ignore_errors=True)
    source = sentences()
    for i in range(DOCS):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"doc{i:06d}.txt").write_text(f"Document {i}. {next(source)} {next(source)}")
    marker.write_text(str(DOCS))


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(data: pathlib.Path, folder: pathlib.Path):
    port = free_port()
    env = dict(os.environ, BASALT_ALLOWED_PATHS=str(folder), BASALT_DATA_DIR=str(data))
    log = open(WORK / "basalt.log", "ab")
    proc = subprocess.Popen([BIN, "serve", "--config", CONFIG, "--listen", f"127.0.0.1:{port}",
                             "--models-dir", MODELS], env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, port
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not start; see " + str(WORK / "basalt.log"))


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def embeddings(port: int) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    total = 0.0
    for line in body.splitlines():
        if (line.startswith("basalt_invocations_total{") and f'model_id="{EMBED}"' in line
                and 'operation="KnowledgeBaseIngestion"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> None:
    folder = WORK / "docs"
    data = WORK / "data"
    t = time.monotonic()
    write_corpus(folder)
    print(f"corpus: {DOCS} documents under {folder} ({time.monotonic() - t:.0f} s to write)")
    proc, port = start(data, folder)
    key = json.loads(subprocess.check_output(
        [BIN, "keys", "create", "--name", f"resume-{int(time.time())}", "--json"],
        env=dict(os.environ, BASALT_DATA_DIR=str(data))))

    def agent_for(p):
        return boto3.client("bedrock-agent", endpoint_url=f"http://127.0.0.1:{p}", region_name="us-east-1",
                            aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"],
                            config=Config(retries={"total_max_attempts": 1}, read_timeout=300))

    agent = agent_for(port)
    kb = agent.create_knowledge_base(
        name=f"resume-{int(time.time())}", roleArn="arn:aws:iam::000000000000:role/basalt-kb",
        knowledgeBaseConfiguration={"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
            "embeddingModelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{EMBED}"}},
        storageConfiguration={"type": "BASALT_EMBEDDED"})["knowledgeBase"]["knowledgeBaseId"]
    ds = agent.create_data_source(knowledgeBaseId=kb, name="docs", dataSourceConfiguration={
        "type": "S3", "s3Configuration": {"bucketArn": folder.as_uri() + "/"}})["dataSource"]["dataSourceId"]
    job = agent.start_ingestion_job(knowledgeBaseId=kb, dataSourceId=ds)["ingestionJob"]["ingestionJobId"]

    def follow(p, agent, stop_at):
        started = time.monotonic()
        peak, samples = 0, []
        while True:
            j = agent.get_ingestion_job(knowledgeBaseId=kb, dataSourceId=ds, ingestionJobId=job)["ingestionJob"]
            rss, hwm = rss_kib(p.pid)
            peak = max(peak, hwm)
            counted = j["statistics"]["numberOfDocumentsScanned"]
            samples.append((round(time.monotonic() - started), counted, rss // 1024))
            if j["status"] in ("COMPLETE", "FAILED", "STOPPED") or counted >= stop_at:
                return j, time.monotonic() - started, peak, samples
            time.sleep(1)

    first, first_s, first_peak, first_samples = follow(proc, agent, int(DOCS * KILL_AT))
    counted_at_kill = first["statistics"]["numberOfDocumentsScanned"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    print(f"first process: {counted_at_kill} documents counted in {first_s:.0f} s "
          f"({counted_at_kill / first_s:.0f} documents/s), peak RSS {first_peak // 1024} MiB; killed (SIGKILL)")
    print("  progress (s, documents counted, RSS MiB):", first_samples[:: max(1, len(first_samples) // 12)])

    t = time.monotonic()
    proc, port = start(data, folder)
    restart_s = time.monotonic() - t
    agent = agent_for(port)
    final, second_s, second_peak, second_samples = follow(proc, agent, DOCS + 1)
    embedded = embeddings(port)
    stats = final["statistics"]
    print(f"restarted in {restart_s:.1f} s; the job resumed and ended {final['status']} after {second_s:.0f} s more, "
          f"peak RSS {second_peak // 1024} MiB")
    print("  progress (s, documents counted, RSS MiB):", second_samples[:: max(1, len(second_samples) // 12)])
    print(f"  the resumed process embedded {embedded:.0f} documents; {DOCS - counted_at_kill} were left uncounted at the kill")
    print("  statistics:", json.dumps(stats))
    total = first_s + second_s
    print(f"RESULT documents={DOCS} seconds={total:.0f} documents_per_s={DOCS / total:.0f} "
          f"peak_rss_mib={max(first_peak, second_peak) // 1024} resumed_embedded={embedded:.0f} "
          f"left_at_kill={DOCS - counted_at_kill} new_indexed={stats['numberOfNewDocumentsIndexed']}")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


if __name__ == "__main__":
    main()
