"""Trains and evaluates the PROMPT_ATTACK content filter: logistic regression on
all-MiniLM-L6-v2 sentence embeddings (from Basalt's /v1/embeddings, the vectors the
server uses at run time).

Data (pinned wheels, nothing written by us):
- bastioncorpus==0.6.0 (MIT) `corpus/injections.jsonl`: 118 malicious (direct and
  indirect injections, instruction overrides, in 5 languages) and 63 benign rows.
- spikee==0.9.2 (Apache-2.0): the 68 jailbreak templates (all but "no-jailbreak") of
  `seeds-cybersec-2026-01`, `seeds-llm-mailbox` and `seeds-sysmsg-extraction-2025-04`,
  each filled with two instructions drawn (seeded) from the sysmsg-extraction,
  harmful-instructions-only and llm-mailbox instruction seeds; benign: the 111
  `seeds-investment-advice-fp` questions and the 49 `seeds-investment-advice`
  standalone inputs (topic requests, not attacks).

Split: by template / row id (a stable hash), so no jailbreak template is on both
sides; 60 % train, 40 % held out. The confidence thresholds are chosen on the
training split (HIGH: ≤1 % false positives, MEDIUM: ≤5 %, LOW: ≤15 %); the held-out
split reports the detection rate at a 5 % false-positive rate and at each shipped
threshold. The regularisation strength and the thresholds come from 5-fold
cross-validation inside the training split (out-of-fold scores).

usage: prompt_attack.py BASALT_URL BEARER_TOKEN BASTION_CORPUS_DIR SPIKEE_DATASETS_DIR [--write MODEL_JSON]
"""
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from linear import (classifier_json, cross_validate, embed, held_out, level_thresholds,  # noqa: E402
                    probability, threshold_at_fpr, train)

URL, TOKEN, BASTION, SPIKEE = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
WRITE = sys.argv[sys.argv.index("--write") + 1] if "--write" in sys.argv else None


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


rows = []  # (text, label, group key)
for r in jsonl(BASTION / "injections.jsonl"):
    rows.append((r["text"], int(r["label"] == "malicious"), "bastion:" + r["id"]))
rng = random.Random(2026)
instructions = [r["instruction"] for d in ("seeds-sysmsg-extraction-2025-04", "seeds-harmful-instructions-only",
                                          "seeds-llm-mailbox") for r in jsonl(SPIKEE / d / "instructions.jsonl")]
templates = {}
for d in ("seeds-cybersec-2026-01", "seeds-llm-mailbox", "seeds-sysmsg-extraction-2025-04"):
    for r in jsonl(SPIKEE / d / "jailbreaks.jsonl"):
        if r["jailbreak_type"] != "no-jailbreak":
            templates.setdefault(r["id"], r["text"])
for tid, text in sorted(templates.items()):
    for instruction in rng.sample(instructions, 2):
        rows.append((text.replace("<INSTRUCTION>", instruction), 1, "spikee:" + tid))
for r in jsonl(SPIKEE / "seeds-investment-advice-fp" / "standalone_user_inputs.jsonl"):
    rows.append((r["text"], 0, "spikee:" + r["id"]))
for r in jsonl(SPIKEE / "seeds-investment-advice" / "standalone_user_inputs.jsonl"):
    rows.append((r["text"], 0, "spikee:" + r["id"]))


X = embed(URL, TOKEN, [t for t, _, _ in rows])
y = np.array([label for _, label, _ in rows], dtype=np.float64)
test = np.array([held_out(key) for _, _, key in rows])
Xtr, ytr, Xte, yte = X[~test], y[~test], X[test], y[test]
print(f"{len(rows)} texts: train {len(ytr)} ({int(ytr.sum())} attacks), held out {len(yte)} ({int(yte.sum())} attacks)")

# The regularisation strength is chosen by 5-fold cross-validation on the training
# split (grouped like the split, by template / row id): the best mean detection at a
# 5 % false-positive rate.
train_keys = [key for (_, _, key), t in zip(rows, test) if not t]
best_lam, oof = cross_validate(Xtr, ytr, train_keys)
print(f"chosen lambda {best_lam:g}")
w, b = train(Xtr, ytr, best_lam)


# Thresholds from the out-of-fold scores: in-sample scores of the training negatives
# are lower than those of unseen text, so thresholds set on them let too much through.
thresholds = level_thresholds(oof[ytr == 0])
pte = probability(Xte, w, b)
neg, pos = pte[yte == 0], pte[yte == 1]
t5 = threshold_at_fpr(neg, 0.05)
print(f"held out: detection at a 5 % false-positive rate: {(pos >= t5).mean():.3f} "
      f"({int((pos >= t5).sum())}/{len(pos)}; threshold {t5:.3f} chosen on the held-out negatives)")
held_rows = [r for r, h in zip(rows, test) if h]
for (text_, label_, _), p_ in sorted(zip(held_rows, pte), key=lambda x: -x[1]):
    if label_ == 0 and p_ >= thresholds["MEDIUM"] and "--show" in sys.argv:
        print(f"    held-out false positive at MEDIUM, p={p_:.2f}: {text_[:100]!r}")
for level, t in thresholds.items():
    print(f"  shipped {level:<6} confidence (p >= {t:.3f}): detection {(pos >= t).mean():.3f}, "
          f"false positives {(neg >= t).mean():.3f} ({int((neg >= t).sum())}/{len(neg)})")
if WRITE:
    Path(WRITE).write_text(json.dumps(classifier_json(
        "PROMPT_ATTACK content filter: logistic regression on all-MiniLM-L6-v2 sentence embeddings. "
        "Trained by benches/guardrails/prompt_attack.py on bastioncorpus==0.6.0 and spikee==0.9.2 seeds "
        "(train split); see benches/README.md for the held-out figures.", w, b, thresholds), indent=None) + "\n")
    print(f"wrote {WRITE}")
