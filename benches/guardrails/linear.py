"""What the content-filter training scripts share: embeddings from Basalt's
/v1/embeddings (the vectors the server uses at run time), a stable group split,
L2-regularised logistic regression with the classes weighted equally, the
regularisation strength chosen by grouped 5-fold cross-validation, and thresholds
at a false-positive rate."""
import hashlib
import json
import urllib.request

import numpy as np

EMBEDDING_MODEL = "sentence-transformers.all-minilm-l6-v2-v1:0"


def bucket(key: str, buckets: int) -> int:
    """A stable bucket of a group key (the same on every run and machine)."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % buckets


def held_out(key: str) -> bool:
    """40 % of the groups are held out."""
    return bucket(key, 10) >= 6


def embed(url, token, texts):
    out = []
    for i in range(0, len(texts), 64):
        req = urllib.request.Request(
            url + "/v1/embeddings",
            data=json.dumps({"model": EMBEDDING_MODEL, "input": texts[i:i + 64]}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        out.extend(d["embedding"] for d in json.load(urllib.request.urlopen(req))["data"])
    return np.array(out, dtype=np.float64)


def train(X, y, lam):
    """L2-regularised logistic regression by gradient descent, classes weighted equally."""
    w, b, lr = np.zeros(X.shape[1]), 0.0, 0.5
    weights = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    for _ in range(3000):
        p = 1 / (1 + np.exp(-(X @ w + b)))
        g = weights * (p - y)
        w -= lr * (X.T @ g / len(y) + lam * w)
        b -= lr * g.mean()
    return w, b


def probability(X, w, b):
    return 1 / (1 + np.exp(-(X @ w + b)))


def threshold_at_fpr(scores_neg, fpr):
    """The lowest threshold that lets at most `fpr` of these negatives through."""
    s = np.sort(scores_neg)[::-1]
    k = int(np.floor(fpr * len(s)))
    return float(s[k]) + 1e-9 if k < len(s) else 0.0


def detection_at(scores_pos, scores_neg, fpr):
    return float((scores_pos >= threshold_at_fpr(scores_neg, fpr)).mean())


def cross_validate(X, y, keys, calibration=None, lams=(1e-3, 1e-2, 3e-2, 1e-1, 3e-1), fpr=0.05, log=print):
    """Chooses the regularisation strength by grouped 5-fold cross-validation (the best
    mean detection at a false-positive rate `fpr` on the `calibration` negatives, all
    negatives when None). Returns (lambda, out-of-fold probabilities)."""
    folds = np.array([bucket(k, 5) for k in keys])
    calibration = (y == 0) if calibration is None else calibration
    best = (None, -1.0, None)
    for lam in lams:
        cv, scores = [], np.zeros(len(y))
        for f in range(5):
            wf, bf = train(X[folds != f], y[folds != f], lam)
            pf = probability(X[folds == f], wf, bf)
            scores[folds == f] = pf
            yf, cf = y[folds == f], calibration[folds == f]
            cv.append(detection_at(pf[yf == 1], pf[cf], fpr))
        log(f"  lambda {lam:g}: cross-validated detection at {fpr * 100:g} % FPR {np.mean(cv):.3f}")
        if np.mean(cv) > best[1]:
            best = (lam, float(np.mean(cv)), scores)
    return best[0], best[2]


# Bedrock's confidence levels, as false-positive rates on benign text (out-of-fold):
# for PROMPT_ATTACK, HIGH lets ≤ 1 % of benign text through, MEDIUM ≤ 5 %, LOW ≤ 15 %.
LEVELS = (("HIGH", 0.01), ("MEDIUM", 0.05), ("LOW", 0.15))


def level_thresholds(oof_benign, levels=LEVELS):
    return {level: threshold_at_fpr(oof_benign, fpr) for level, fpr in levels}


def classifier_json(about, w, b, thresholds):
    return {
        "about": about,
        "dimensions": len(w),
        "weights": [round(float(v), 6) for v in w],
        "bias": round(float(b), 6),
        "thresholds": {k: round(v, 6) for k, v in thresholds.items()},
    }
