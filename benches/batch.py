"""1,000 records through a batch job vs the same records sent one by one through
on-demand InvokeModel from one client, on the same server, one after the other.

usage: batch.py BASALT_URL BEARER_TOKEN WORK_DIR (WORK_DIR must be an allowed local path)
"""
import json
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import botocore
from botocore.config import Config

URL, TOKEN, WORK = sys.argv[1], sys.argv[2], Path(sys.argv[3])
MODEL = "huggingfacetb.smollm2-135m-instruct-v1:0"
N, MAX_GEN = 1000, 16


def prompt(i):
    return (f"<|im_start|>user\nWrite one sentence about the number {i}.<|im_end|>\n"
            "<|im_start|>assistant\n")


session = boto3.session.Session(aws_access_key_id="unused", aws_secret_access_key="unused")
control = session.client("bedrock", endpoint_url=URL, region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
control.meta.events.register("choose-signer.*.*", lambda **_: botocore.UNSIGNED)
control.meta.events.register("before-send.*.*", lambda request, **_: request.headers.__setitem__("Authorization", f"Bearer {TOKEN}"))

inp = WORK / "bench-input.jsonl"
inp.write_text("".join(json.dumps({"recordId": f"r{i:04d}", "modelInput": {"prompt": prompt(i), "max_gen_len": MAX_GEN, "temperature": 0}}) + "\n" for i in range(N)))
start = time.perf_counter()
arn = control.create_model_invocation_job(
    jobName=f"bench-{uuid.uuid4().hex[:8]}", roleArn="arn:aws:iam::000000000000:role/bench", modelId=MODEL,
    inputDataConfig={"s3InputDataConfig": {"s3Uri": f"file://{inp}"}},
    outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"file://{WORK}/out/"}})["jobArn"]
while True:
    job = control.get_model_invocation_job(jobIdentifier=arn)
    if job["status"] in ("Completed", "PartiallyCompleted", "Failed", "Stopped"):
        break
    time.sleep(0.2)
batch_s = time.perf_counter() - start
assert job["status"] == "Completed", job
out_tokens = json.loads((WORK / "out" / arn.rsplit("/", 1)[1] / "manifest.json.out").read_text())["outputTokenCount"]
print(f"batch job:      {N} records in {batch_s:6.1f} s = {N / batch_s:6.1f} records/s ({out_tokens / batch_s:6.1f} output tok/s)")

start = time.perf_counter()
tokens = 0
for i in range(N):
    req = urllib.request.Request(
        f"{URL}/model/{MODEL}/invoke", data=json.dumps({"prompt": prompt(i), "max_gen_len": MAX_GEN, "temperature": 0}).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    tokens += json.load(urllib.request.urlopen(req))["generation_token_count"]
seq_s = time.perf_counter() - start
print(f"on-demand, one client, one at a time: {N} records in {seq_s:6.1f} s = {N / seq_s:6.1f} records/s ({tokens / seq_s:6.1f} output tok/s)")
print(f"batch / sequential on-demand = {seq_s / batch_s:.2f}x")
