"""Soak: mixed load on one node for a while, the node's RSS sampled every 10 s.

    python benches/soak.py URL TOKEN ACCESS_KEY SECRET PID SECONDS

Six kinds of call in turn from 6 threads: Converse (local SmolLM2, 12 tokens),
ConverseStream, OpenAI chat with stream, embeddings (MiniLM), Retrieve on a small
knowledge base (made first), ApplyGuardrail. Prints the RSS curve, per kind the calls,
errors other than modelled throttles, and p50 / p99 per third of the run (stable p99:
the last third no worse than the first by more than noise), and exits 1 on any
unmodelled error.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import uuid

import boto3
import openai
from botocore.config import Config

CHAT = "huggingfacetb.smollm2-135m-instruct-v1:0"
EMBED = "sentence-transformers.all-minilm-l6-v2-v1:0"
REGION = "us-east-1"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    url, token, akid, secret, pid, seconds = sys.argv[1:7]
    pid, seconds = int(pid), float(seconds)
    cfg = Config(retries={"max_attempts": 1}, read_timeout=300)
    session = boto3.session.Session()
    kw = dict(endpoint_url=url, region_name=REGION, aws_access_key_id=akid, aws_secret_access_key=secret, config=cfg)
    runtime, control = session.client("bedrock-runtime", **kw), session.client("bedrock", **kw)
    agent, agent_rt = session.client("bedrock-agent", **kw), session.client("bedrock-agent-runtime", **kw)
    oai = openai.OpenAI(base_url=url + "/v1", api_key=token, max_retries=0, timeout=300)

    kb = agent.create_knowledge_base(
        name=f"soak-{uuid.uuid4().hex[:6]}", roleArn="arn:aws:iam::000000000000:role/soak",
        knowledgeBaseConfiguration={"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
            "embeddingModelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{EMBED}"}},
        storageConfiguration={"type": "BASALT_EMBEDDED"})["knowledgeBase"]["knowledgeBaseId"]
    ds = agent.create_data_source(knowledgeBaseId=kb, name="docs",
                                  dataSourceConfiguration={"type": "CUSTOM"})["dataSource"]["dataSourceId"]
    facts = ["Basalt is a fine-grained volcanic rock.", "Granite forms from slowly cooled magma.",
             "Pumice floats on water.", "Obsidian is volcanic glass.", "Limestone is mostly calcite."]
    agent.ingest_knowledge_base_documents(knowledgeBaseId=kb, dataSourceId=ds, documents=[
        {"content": {"dataSourceType": "CUSTOM", "custom": {"customDocumentIdentifier": {"id": f"d{i}"},
         "sourceType": "IN_LINE", "inlineContent": {"type": "TEXT", "textContent": {"data": t}}}}}
        for i, t in enumerate(facts)])
    guardrail = control.create_guardrail(
        name=f"soak-{uuid.uuid4().hex[:6]}", blockedInputMessaging="blocked", blockedOutputsMessaging="blocked",
        wordPolicyConfig={"wordsConfig": [{"text": "forbidden"}]},
        contentPolicyConfig={"filtersConfig": [{"type": "INSULTS", "inputStrength": "HIGH", "outputStrength": "HIGH"}]})

    def converse():
        runtime.converse(modelId=CHAT, messages=[{"role": "user", "content": [{"text": "Name a rock."}]}],
                         inferenceConfig={"maxTokens": 12, "temperature": 0.7})

    def converse_stream():
        out = runtime.converse_stream(modelId=CHAT, messages=[{"role": "user", "content": [{"text": "Name a river."}]}],
                                      inferenceConfig={"maxTokens": 12})
        for _ in out["stream"]:
            pass

    def openai_stream():
        for _ in oai.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Name a city."}],
                                             max_tokens=12, stream=True):
            pass

    def embeddings():
        oai.embeddings.create(model=EMBED, input=[f"soak sentence {uuid.uuid4().hex}" for _ in range(8)])

    def retrieve():
        agent_rt.retrieve(knowledgeBaseId=kb, retrievalQuery={"text": "which rock floats?"},
                          retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 3}})

    def guard():
        runtime.apply_guardrail(guardrailIdentifier=guardrail["guardrailId"], guardrailVersion="DRAFT",
                                source="INPUT", content=[{"text": {"text": "You are a wonderful person."}}])

    kinds = [converse, converse_stream, openai_stream, embeddings, retrieve, guard]
    started = time.monotonic()
    stop = started + seconds
    samples: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    errors: list[str] = []
    throttles = collections.Counter()
    lock = threading.Lock()

    def worker(offset: int) -> None:
        i = offset
        while time.monotonic() < stop:
            fn = kinds[i % len(kinds)]
            i += 1
            t0 = time.monotonic()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 — every failure is counted and shown
                text = repr(e)
                with lock:
                    if "Throttling" in text or "RateLimit" in text or "429" in text:
                        throttles[fn.__name__] += 1
                    else:
                        errors.append(f"{fn.__name__}: {text[:300]}")
                continue
            with lock:
                samples[fn.__name__].append((t0 - started, time.monotonic() - t0))

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(len(kinds))]
    for t in threads:
        t.start()
    curve = []
    while time.monotonic() < stop:
        curve.append((time.monotonic() - started, rss_mib(pid)))
        time.sleep(10)
    for t in threads:
        t.join(timeout=300)
    curve.append((time.monotonic() - started, rss_mib(pid)))

    print("RSS (MiB) every 10 s:")
    print("  " + " ".join(f"{m:.0f}" for _, m in curve))
    first_min = [m for t, m in curve if t <= 60]
    print(f"  start {curve[0][1]:.0f}, after the first minute {max(first_min):.0f}, end {curve[-1][1]:.0f}, "
          f"max {max(m for _, m in curve):.0f}")
    print(f"{'kind':<16} {'calls':>6} {'throttled':>9} {'p50 1st/3':>10} {'p99 1st/3':>10} {'p50 3rd/3':>10} {'p99 3rd/3':>10}")
    third = seconds / 3
    for fn in kinds:
        s = samples[fn.__name__]

        def pct(rows, q):
            rows = sorted(d for _, d in rows)
            return rows[min(len(rows) - 1, int(q * len(rows)))] * 1000 if rows else float("nan")

        first = [r for r in s if r[0] < third]
        last = [r for r in s if r[0] >= 2 * third]
        print(f"{fn.__name__:<16} {len(s):>6} {throttles[fn.__name__]:>9} {pct(first, .5):>9.0f}ms {pct(first, .99):>9.0f}ms "
              f"{pct(last, .5):>9.0f}ms {pct(last, .99):>9.0f}ms")
    print(f"unmodelled errors: {len(errors)}")
    for e in errors[:20]:
        print("  " + e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
