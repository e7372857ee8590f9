"""Batch inference through boto3: CreateModelInvocationJob, Get, List, Stop, with
file:/// input and output locations under the directories the server allows.
Output lines, error lines and the manifest are checked against Bedrock's documented
formats; a job killed with SIGKILL mid-way resumes after a restart and writes every
record exactly once."""
import json
import time
import uuid
from pathlib import Path

import pytest

from basalt_support import CHAT_MODEL, EMBED_MODEL, chatml, expect_client_error
import boto3

from conftest import BOTO_CONFIG, TEST_CONFIG, start_server, stop_server

ROLE = "arn:aws:iam::000000000000:role/basalt-batch"


def write_input(path: Path, n: int, bad: bool = False) -> list[str]:
    """`n` Llama-style records (recordId r0000…), optionally followed by bad lines."""
    ids = []
    with path.open("w") as f:
        for i in range(n):
            rid = f"r{i:04d}"
            ids.append(rid)
            body = {"prompt": chatml(f"Say the number {i}."), "max_gen_len": 3, "temperature": 0}
            f.write(json.dumps({"recordId": rid, "modelInput": body}) + "\n")
        if bad:
            f.write("this line is not JSON\n")
            f.write(json.dumps({"recordId": "nomodelinput"}) + "\n")
            f.write(json.dumps({"recordId": "stringinput", "modelInput": "hello"}) + "\n")
            f.write(json.dumps({"recordId": "badbody", "modelInput": {"max_gen_len": 3}}) + "\n")
            f.write(json.dumps({"modelInput": {"prompt": chatml("Hi"), "max_gen_len": 2}}) + "\n")
    return ids


def create(control, model, inp: Path, out: Path, **kw):
    resp = control.create_model_invocation_job(
        jobName=f"job-{uuid.uuid4().hex[:8]}", roleArn=ROLE, modelId=model,
        inputDataConfig={"s3InputDataConfig": {"s3InputFormat": "JSONL", "s3Uri": f"file://{inp}"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"file://{out}/"}}, **kw)
    arn = resp["jobArn"]
    assert ":model-invocation-job/" in arn
    return arn


def wait(control, arn, until=("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"), timeout=600,
         predicate=None):
    deadline = time.monotonic() + timeout
    while True:
        job = control.get_model_invocation_job(jobIdentifier=arn)
        if job["status"] in until or (predicate and predicate(job)):
            return job
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout}s: {job}"
        time.sleep(0.3)


def output_lines(out: Path, arn: str, name: str) -> list[dict]:
    job_id = arn.rsplit("/", 1)[1]
    text = (out / job_id / f"{name}.out").read_text()
    return [json.loads(line) for line in text.splitlines()]


def manifest(out: Path, arn: str) -> dict:
    return json.loads((out / arn.rsplit("/", 1)[1] / "manifest.json.out").read_text())


def test_a_job_completes_with_outputs_error_lines_and_a_manifest(control, batch_root):
    work = batch_root / uuid.uuid4().hex[:8]
    work.mkdir()
    inp, out = work / "records.jsonl", work / "out"
    ids = write_input(inp, 200, bad=True)
    arn = create(control, CHAT_MODEL, inp, out)
    job = wait(control, arn)
    assert job["status"] == "PartiallyCompleted", job
    lines = output_lines(out, arn, "records.jsonl")
    assert len(lines) == 205
    by_id = {line["recordId"]: line for line in lines}
    assert len(by_id) == 205, "every record exactly once"
    for rid in ids:
        line = by_id[rid]
        assert "error" not in line, line
        assert isinstance(line["modelOutput"]["generation"], str)
        assert line["modelOutput"]["generation_token_count"] >= 1
        assert line["modelInput"]["max_gen_len"] == 3
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 4
    for line in errors:
        assert line["error"]["errorCode"] == 400 and line["error"]["errorMessage"]
        assert "modelOutput" not in line
    assert by_id["badbody"]["error"]["errorMessage"], "a body the model rejects is an error line"
    generated = [line for line in lines if line["recordId"] not in ids and line["recordId"] not in
                 ("nomodelinput", "stringinput", "badbody")]
    assert len(generated) == 2, "a record without recordId gets one (and so does a non-JSON line)"
    m = manifest(out, arn)
    assert m == {
        "totalRecordCount": 205, "processedRecordCount": 205, "successRecordCount": 201, "errorRecordCount": 4,
        "inputTokenCount": sum(l["modelOutput"]["prompt_token_count"] for l in lines if "modelOutput" in l),
        "outputTokenCount": sum(l["modelOutput"]["generation_token_count"] for l in lines if "modelOutput" in l),
    }
    assert (job["totalRecordCount"], job["processedRecordCount"], job["successRecordCount"],
            job["errorRecordCount"]) == (205, 205, 201, 4)
    assert job["endTime"] >= job["submitTime"]
    listed = control.list_model_invocation_jobs(nameContains=job["jobName"])["invocationJobSummaries"]
    assert [j["jobArn"] for j in listed] == [arn]
    assert control.list_model_invocation_jobs(statusEquals="PartiallyCompleted")["invocationJobSummaries"]


def test_converse_and_embedding_jobs(control, batch_root):
    work = batch_root / uuid.uuid4().hex[:8]
    work.mkdir()
    conv = work / "converse.jsonl"
    conv.write_text("".join(json.dumps({"recordId": f"c{i}", "modelInput": {
        "messages": [{"role": "user", "content": [{"text": f"Say {i}."}]}],
        "inferenceConfig": {"maxTokens": 3, "temperature": 0}}}) + "\n" for i in range(5)))
    arn = create(control, CHAT_MODEL, conv, work / "out", modelInvocationType="Converse")
    assert wait(control, arn)["status"] == "Completed"
    for line in output_lines(work / "out", arn, "converse.jsonl"):
        assert line["modelOutput"]["output"]["message"]["role"] == "assistant"
        assert line["modelOutput"]["usage"]["outputTokens"] >= 1
    emb = work / "embed.jsonl"
    emb.write_text("".join(json.dumps({"recordId": f"e{i}", "modelInput": {"inputText": f"sentence {i}"}}) + "\n"
                           for i in range(5)))
    arn = create(control, EMBED_MODEL, emb, work / "out")
    assert wait(control, arn)["status"] == "Completed"
    for line in output_lines(work / "out", arn, "embed.jsonl"):
        assert len(line["modelOutput"]["embedding"]) == 384


def test_bad_locations_and_files(control, batch_root, tmp_path):
    good = batch_root / f"{uuid.uuid4().hex[:8]}.jsonl"
    write_input(good, 1)
    outside = tmp_path / "outside.jsonl"
    write_input(outside, 1)
    out = batch_root / "out"
    expect_client_error(lambda: create(control, CHAT_MODEL, outside, out), "AccessDeniedException", 403)
    expect_client_error(lambda: create(control, CHAT_MODEL, good, tmp_path / "elsewhere"), "AccessDeniedException", 403)
    expect_client_error(lambda: create(control, CHAT_MODEL, Path(f"{batch_root}/../{outside.parent.name}/outside.jsonl"), out),
                        "AccessDeniedException", 403)
    expect_client_error(lambda: create(control, CHAT_MODEL, batch_root / "missing.jsonl", out),
                        "ValidationException", 400, message_contains="cannot be read")
    expect_client_error(lambda: control.create_model_invocation_job(
        jobName="s3job", roleArn=ROLE, modelId=CHAT_MODEL,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://bucket/in.jsonl"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bucket/out/"}}),
        "AccessDeniedException", 403, message_contains="allows no S3 buckets")
    expect_client_error(lambda: create(control, EMBED_MODEL, good, out, modelInvocationType="Converse"),
                        "ValidationException", 400, message_contains="embedding model")
    expect_client_error(lambda: create(control, "no.such-model-v1:0", good, out), "ResourceNotFoundException", 404)
    expect_client_error(lambda: control.get_model_invocation_job(jobIdentifier="zzzzzzzzzzzz"),
                        "ResourceNotFoundException", 404)
    text = batch_root / f"{uuid.uuid4().hex[:8]}.jsonl"
    text.write_text("Dear team,\nthis is a letter, not JSONL.\n")
    job = wait(control, create(control, CHAT_MODEL, text, out))
    assert job["status"] == "Failed" and "not JSONL" in job["message"], job


def test_stop_keeps_what_was_done(control, batch_root):
    work = batch_root / uuid.uuid4().hex[:8]
    work.mkdir()
    inp, out = work / "many.jsonl", work / "out"
    write_input(inp, 400)
    arn = create(control, CHAT_MODEL, inp, out)
    wait(control, arn, predicate=lambda j: j.get("processedRecordCount", 0) > 0)
    control.stop_model_invocation_job(jobIdentifier=arn)
    job = wait(control, arn)
    assert job["status"] == "Stopped", job
    lines = output_lines(out, arn, "many.jsonl")
    assert 0 < len(lines) < 400
    assert len({line["recordId"] for line in lines}) == len(lines)
    assert manifest(out, arn)["processedRecordCount"] == len(lines) == job["processedRecordCount"]
    expect_client_error(lambda: control.stop_model_invocation_job(jobIdentifier=arn), "ConflictException", 400)


def test_jobs_list_shows_each_job_with_its_progress(server, control, batch_root):
    work = batch_root / uuid.uuid4().hex[:8]
    work.mkdir()
    inp, out = work / "few.jsonl", work / "out"
    write_input(inp, 20)
    arn = create(control, CHAT_MODEL, inp, out)
    assert wait(control, arn)["status"] == "Completed"
    rows = {r["id"]: r for r in server.cli_json("jobs", "list", "--kind", "batch", "--json")}
    row = rows[arn.rsplit("/", 1)[1]]
    assert (row["kind"], row["state"], row["done"], row["total"]) == ("batch", "Completed", 20, 20), row
    assert row["node"] is None and row["claims"] == 1 and row["end_time_ms"], "an ended job holds no lease"
    table = server.cli("jobs", "list").stdout
    assert arn.rsplit("/", 1)[1] in table and "20/20 (100%)" in table, table
    refused = server.cli("jobs", "list", "--kind", "nope", check=False)
    assert refused.returncode != 0 and "not one of batch, ingestion" in refused.stderr, refused.stderr


def bedrock_client(srv, key: dict):
    return boto3.session.Session().client(
        "bedrock", endpoint_url=srv.url, region_name="us-east-1", aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG)


def test_a_killed_job_resumes_and_writes_every_record_once(tmp_path_factory, _hermetic_client_env):
    base = tmp_path_factory.mktemp("batch-kill")
    root = base / "root"
    root.mkdir()
    env = {"BASALT_ALLOWED_PATHS": str(root)}
    srv = start_server(TEST_CONFIG, base, env)
    try:
        key = srv.cli_json("keys", "create", "--name", "batch", "--json")
        control = bedrock_client(srv, key)
        inp, out = root / "kill.jsonl", root / "out"
        ids = write_input(inp, 300)
        arn = create(control, CHAT_MODEL, inp, out)
        wait(control, arn, predicate=lambda j: j.get("processedRecordCount", 0) >= 30)
        srv.proc.kill()  # SIGKILL: no shutdown, no flush
        srv.proc.wait(timeout=30)
    except BaseException:
        stop_server(srv)
        raise
    srv = start_server(TEST_CONFIG, base, env)
    try:
        control = bedrock_client(srv, key)
        job = wait(control, arn)
        assert job["status"] == "Completed", job
        lines = output_lines(out, arn, "kill.jsonl")
        assert sorted(line["recordId"] for line in lines) == ids, "every record exactly once after the restart"
        assert manifest(out, arn)["successRecordCount"] == 300
    finally:
        stop_server(srv)


def test_batch_records_are_metered_as_batch_at_half_price(server, control, batch_root, key):
    work = batch_root / uuid.uuid4().hex[:8]
    work.mkdir()
    inp = work / "metered.jsonl"
    write_input(inp, 4)
    arn = create(control, CHAT_MODEL, inp, work / "out")
    assert wait(control, arn)["status"] == "Completed"
    deadline = time.monotonic() + 30
    while True:
        rows = [r for r in server.cli_json("usage", "--json")["rows"]
                if r["key_name"] == key.name and r["inference_type"] == "BATCH"]
        if rows and rows[0]["invocations"] >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    row = rows[0]
    # Catalog prices per 1k tokens: input 0.00002, output 0.00008; batch pays half.
    full = row["input_tokens"] / 1000 * 0.00002 + row["output_tokens"] / 1000 * 0.00008
    assert abs(row["cost_usd"] - full / 2) < 1e-12, (row, full)


def test_an_allowed_path_that_does_not_exist_stops_the_start(tmp_path, _hermetic_client_env):
    import os
    import subprocess

    from conftest import REPO, _find_binary, _free_port

    missing = tmp_path / "not-created"
    env = dict(os.environ, BASALT_ALLOWED_PATHS=str(missing),
               BASALT_MODELS_DIR=os.environ.get("BASALT_MODELS_DIR") or str(REPO / "models"))
    cp = subprocess.run(
        [str(_find_binary()), "serve", "--listen", f"127.0.0.1:{_free_port()}",
         "--data-dir", str(tmp_path / "data"), "--config", str(TEST_CONFIG)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert cp.returncode != 0, cp.stdout[-500:]
    assert f"the allowed local path {missing}" in cp.stderr and "create it or remove it" in cp.stderr, cp.stderr[-800:]
