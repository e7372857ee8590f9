"""ApplyGuardrail latency over HTTP for a 1,000-character input with every policy this
server has on (denied topics, all six content filters, words + profanity, all 31 PII
types, custom regexes, contextual grounding with a source and a query), and with the
pattern tiers only.
Sequential calls from one client; p50/p99 over 300 calls after 20 warm-up calls.

usage: latency.py BASALT_URL BEARER_TOKEN
"""
import statistics
import sys
import time
import uuid

import boto3
import botocore
from botocore.config import Config

URL, TOKEN = sys.argv[1], sys.argv[2]
TEXT = ("Hello, my name is Maria Gonzalez and I am writing about my order from last week. You can reach me at "
        "maria.gonzalez@example.com or on (212) 736-5000 after six. The package was sent to 221 Baker Street, "
        "Springfield, IL 62704, but the tracking page at https://shop.example.com/track?id=88 still says pending. "
        "My card was charged twice, and my account number 12345678901 shows both charges. Could you please refund "
        "one of them? I have attached the receipt, ticket TCK-4821, and a photo of the damaged box. The courier "
        "left it in the rain, which is frankly not acceptable for a parcel marked fragile. I would also like to "
        "know whether the replacement can be delivered to my office instead, since nobody is home during the day. "
        "Thank you for your help, and have a good afternoon. Best regards, Maria. ") * 2
TEXT = TEXT[:1000]

session = boto3.session.Session(aws_access_key_id="unused", aws_secret_access_key="unused")
control, runtime = (session.client(s, endpoint_url=URL, region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
                    for s in ("bedrock", "bedrock-runtime"))
for c in (control, runtime):
    c.meta.events.register("choose-signer.*.*", lambda **_: botocore.UNSIGNED)
    c.meta.events.register("before-send.*.*", lambda request, **_: request.headers.__setitem__("Authorization", f"Bearer {TOKEN}"))

PII = ["ADDRESS", "AGE", "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "CA_HEALTH_NUMBER", "CA_SOCIAL_INSURANCE_NUMBER",
       "CREDIT_DEBIT_CARD_CVV", "CREDIT_DEBIT_CARD_EXPIRY", "CREDIT_DEBIT_CARD_NUMBER", "DRIVER_ID", "EMAIL",
       "INTERNATIONAL_BANK_ACCOUNT_NUMBER", "IP_ADDRESS", "LICENSE_PLATE", "MAC_ADDRESS", "NAME", "PASSWORD",
       "PHONE", "PIN", "SWIFT_CODE", "UK_NATIONAL_HEALTH_SERVICE_NUMBER", "UK_NATIONAL_INSURANCE_NUMBER",
       "UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER", "URL", "USERNAME", "US_BANK_ACCOUNT_NUMBER", "US_BANK_ROUTING_NUMBER",
       "US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER", "US_PASSPORT_NUMBER", "US_SOCIAL_SECURITY_NUMBER",
       "VEHICLE_IDENTIFICATION_NUMBER"]
patterns = dict(
    wordPolicyConfig={"wordsConfig": [{"text": f"blocked phrase {i}"} for i in range(1000)],
                      "managedWordListsConfig": [{"type": "PROFANITY"}]},
    sensitiveInformationPolicyConfig={"piiEntitiesConfig": [{"type": t, "action": "ANONYMIZE"} for t in PII],
                                      "regexesConfig": [{"name": "ticket", "pattern": r"TCK-\d{4}", "action": "ANONYMIZE"}]},
)
everything = dict(patterns,
    topicPolicyConfig={"topicsConfig": [
        {"name": "Investment advice", "definition": "Recommendations about which stocks, funds or coins to buy or sell.",
         "examples": ["Which stocks should I buy?"], "type": "DENY"},
        {"name": "Medical diagnosis", "definition": "Telling a person which illness they have from their symptoms.",
         "examples": ["Do I have the flu?"], "type": "DENY"}]},
    contentPolicyConfig={"filtersConfig": [
        {"type": t, "inputStrength": "HIGH", "outputStrength": "HIGH"} for t in ("HATE", "INSULTS", "SEXUAL", "VIOLENCE", "MISCONDUCT")
    ] + [{"type": "PROMPT_ATTACK", "inputStrength": "HIGH", "outputStrength": "NONE"}]},
    contextualGroundingPolicyConfig={"filtersConfig": [{"type": "GROUNDING", "threshold": 0.1},
                                                       {"type": "RELEVANCE", "threshold": 0.1}]},
)


def measure(label, policies, source, content):
    gid = control.create_guardrail(name=f"bench-lat-{uuid.uuid4().hex[:8]}", blockedInputMessaging="no",
                                   blockedOutputsMessaging="no", **policies)["guardrailId"]
    call = lambda: runtime.apply_guardrail(guardrailIdentifier=gid, guardrailVersion="DRAFT", source=source, content=content)
    for _ in range(20):
        call()
    samples = []
    for _ in range(300):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    print(f"{label:<58} p50 {statistics.median(samples):6.2f} ms   p99 {samples[int(len(samples) * 0.99) - 1]:6.2f} ms")


text = [{"text": {"text": TEXT}}]
grounded = text + [{"text": {"text": "Orders are refunded within five days when charged twice.", "qualifiers": ["grounding_source"]}},
                   {"text": {"text": "Can you refund a double charge?", "qualifiers": ["query"]}}]
print("ApplyGuardrail over HTTP (boto3, one client, sequential), 1,000-character input")
measure("pattern tiers only (1,000 words, profanity, 31 PII, regex)", patterns, "INPUT", text)
measure("every policy, INPUT (adds 2 denied topics, 6 content filters)", everything, "INPUT", text)
measure("every policy, OUTPUT (adds grounding + relevance)", everything, "OUTPUT", grounded)
