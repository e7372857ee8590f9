"""Single-request decode speed through Bedrock ConverseStream (boto3, SigV4).

Decode rate = (output tokens - 1) / (time of last text delta - time of first text
delta): prompt processing and HTTP set-up are outside the window, as llama-bench's
tg figure excludes prompt processing. Prints the median over REPEATS runs.
"""
import json
import os
import statistics
import sys
import time

import boto3
from botocore.config import Config

endpoint, akid, secret = sys.argv[1], sys.argv[2], sys.argv[3]
repeats = int(os.environ.get("REPEATS", "5"))
max_tokens = int(os.environ.get("MAX_TOKENS", "128"))
rt = boto3.client(
    "bedrock-runtime", endpoint_url=endpoint, region_name="us-east-1",
    aws_access_key_id=akid, aws_secret_access_key=secret,
    config=Config(retries={"total_max_attempts": 1}, read_timeout=300),
)
model = "huggingfacetb.smollm2-135m-instruct-v1:0"
prompt = "Write a very long story about a lighthouse keeper and the sea. Use many details."
rates = []
for _ in range(repeats):
    resp = rt.converse_stream(
        modelId=model,
        messages=[{"role": "user", "content": [{"text": prompt}]}],
        inferenceConfig={"maxTokens": max_tokens, "temperature": 0},
    )
    first = last = None
    usage = None
    for event in resp["stream"]:
        if "contentBlockDelta" in event:
            now = time.perf_counter()
            first = first or now
            last = now
        if "metadata" in event:
            usage = event["metadata"]["usage"]
    tokens = usage["outputTokens"]
    rates.append((tokens - 1) / (last - first))
print(json.dumps({"input_tokens": usage["inputTokens"], "output_tokens": tokens, "decode_tok_s": statistics.median(rates), "runs": rates}))
