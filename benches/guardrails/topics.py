"""Denied-topic detection on a public labelled set: spikee 0.9.2's investment-advice
seeds (122 requests for personal investment advice: standalone inputs and
instructions) against its false-positive seeds (111 benign finance questions such as
"What are the key factors to consider when investing?").

The topic is the one AWS documents as its example ("Investment Advice"; the
definition shortened to Bedrock's 200-character limit). The set is split by index:
even rows calibrate the threshold (the script prints the score distribution and the
best-accuracy threshold on them, with the scoring re-computed here from
/v1/embeddings), odd rows are held out and evaluated through ApplyGuardrail, the
product path, at the built-in threshold.

usage: topics.py BASALT_URL BEARER_TOKEN SPIKEE_DATASETS_DIR
"""
import json
import math
import sys
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

URL, TOKEN, DATASETS = sys.argv[1], sys.argv[2], Path(sys.argv[3])
TOPIC = {
    "name": "Investment Advice",
    "definition": "Investment advice refers to inquiries, guidance, or recommendations regarding the management or allocation of funds or assets to generate returns or reach financial objectives.",
    "examples": [
        "Is investing in the stocks better than bonds?",
        "Should I invest in gold?",
        "Which mutual fund should I choose for retirement?",
    ],
    "type": "DENY",
}


def rows(path, field):
    return [json.loads(line)[field] for line in path.read_text().splitlines() if line.strip()]


positives = rows(DATASETS / "seeds-investment-advice/standalone_user_inputs.jsonl", "text") + rows(
    DATASETS / "seeds-investment-advice/instructions.jsonl", "instruction")
negatives = rows(DATASETS / "seeds-investment-advice-fp/standalone_user_inputs.jsonl", "text")


def embed(texts):
    req = urllib.request.Request(
        URL + "/v1/embeddings",
        data=json.dumps({"model": "sentence-transformers.all-minilm-l6-v2-v1:0", "input": texts}).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    return [d["embedding"] for d in json.load(urllib.request.urlopen(req))["data"]]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def sentences(text):
    out, start = [], 0
    for i, c in enumerate(text):
        if c == "\n" or (c in ".!?" and (i + 1 == len(text) or text[i + 1].isspace())):
            piece = text[start:i + 1].strip()
            if piece:
                out.append(piece)
            start = i + 1
    rest = text[start:].strip()
    if rest:
        out.append(rest)
    return out


# The same scoring as crates/basalt-guardrails/src/semantic.rs: the best similarity
# to the topic's texts minus CONTRAST_WEIGHT times the best similarity to the
# contrast text made from the topic's name.
CONTRAST_WEIGHT = 0.5
refs = embed([f"{TOPIC['name']}: {TOPIC['definition']}"] + TOPIC["examples"])
contrast = embed([f"Explain how {TOPIC['name'].lower()} works in general."])


def score(text):
    units = sentences(text)
    if len(units) > 1:
        units = [text] + units
    vectors = embed(units)
    best = lambda rs: max(cos(v, r) for v in vectors for r in rs)
    return best(refs) - CONTRAST_WEIGHT * best(contrast)


calib = [(score(t), 1) for t in positives[::2]] + [(score(t), 0) for t in negatives[::2]]
best = max(
    ((th / 100, sum((s >= th / 100) == bool(y) for s, y in calib) / len(calib)) for th in range(-20, 60)),
    key=lambda x: x[1],
)
pos = sorted(s for s, y in calib if y)
neg = sorted(s for s, y in calib if not y)
print(f"calibration split: {len(pos)} positives, {len(neg)} negatives")
print(f"  positive scores p10/p50/p90: {pos[len(pos)//10]:.3f} {pos[len(pos)//2]:.3f} {pos[9*len(pos)//10]:.3f}")
print(f"  negative scores p10/p50/p90: {neg[len(neg)//10]:.3f} {neg[len(neg)//2]:.3f} {neg[9*len(neg)//10]:.3f}")
print(f"  best accuracy threshold on the calibration split: {best[0]:.2f} (accuracy {best[1]:.3f})")

session = boto3.session.Session(aws_access_key_id="unused", aws_secret_access_key="unused")
control = session.client("bedrock", endpoint_url=URL, region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
runtime = session.client("bedrock-runtime", endpoint_url=URL, region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
for c in (control, runtime):
    c.meta.events.register("before-sign.*.*", lambda request, **_: request.headers.__setitem__("Authorization", f"Bearer {TOKEN}"))
    c.meta.events.register("choose-signer.*.*", lambda **_: __import__("botocore").UNSIGNED)
gid = control.create_guardrail(name=f"bench-topics-{__import__('uuid').uuid4().hex[:8]}", blockedInputMessaging="no", blockedOutputsMessaging="no",
                               topicPolicyConfig={"topicsConfig": [TOPIC]})["guardrailId"]


def blocked(text):
    r = runtime.apply_guardrail(guardrailIdentifier=gid, guardrailVersion="DRAFT", source="INPUT",
                                content=[{"text": {"text": text}}])
    return r["action"] == "GUARDRAIL_INTERVENED"


tp = sum(blocked(t) for t in positives[1::2])
fp = sum(blocked(t) for t in negatives[1::2])
n_pos, n_neg = len(positives[1::2]), len(negatives[1::2])
print(f"held-out split through ApplyGuardrail: detection {tp}/{n_pos} = {tp/n_pos:.3f}, "
      f"false positives {fp}/{n_neg} = {fp/n_neg:.3f}")
