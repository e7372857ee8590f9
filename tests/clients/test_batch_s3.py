"""Batch inference with s3:// input and output locations on an S3-compatible store.

Real AWS S3 cannot be reached from here, so the store is moto's S3 server (pinned in
requirements.txt), which speaks S3's REST/XML wire protocol: ListObjectsV2, GetObject,
PutObject and multipart uploads, with S3's error bodies. moto runs with IAM
authentication on, so every request Basalt sends must carry a valid SigV4 signature
made with the credentials the server reads from the environment variables its `[s3]`
configuration names; the data is then read back with boto3's own S3 client.
"""
import json
import os
import socket
import subprocess
import sys
import time
import uuid

import boto3
import pytest

from basalt_support import CHAT_MODEL, chatml, expect_client_error, http_request
from conftest import BOTO_CONFIG, TEST_CONFIG, _tail, start_server, stop_server

ROLE = "arn:aws:iam::000000000000:role/basalt-batch"
BUCKET = "basalt-batch-data"
OTHER_BUCKET = "basalt-not-allowed"
# Unauthenticated calls moto allows before it enforces IAM: the set-up below (create
# the buckets, a user, its policy and access key) uses exactly these.
SETUP_CALLS = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_store(tmp_path_factory, _hermetic_client_env):
    """moto's S3 server on a free port, with two buckets and an IAM user whose key
    Basalt signs with; yields (endpoint, access key ID, secret)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_CALLS))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if http_request(port, "GET", "/moto-api/", timeout=2).status < 500:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"moto's S3 server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    setup = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                 aws_secret_access_key="setup")
    s3_setup = boto3.client("s3", **setup)
    iam = boto3.client("iam", **setup)
    s3_setup.create_bucket(Bucket=BUCKET)
    s3_setup.create_bucket(Bucket=OTHER_BUCKET)
    iam.create_user(UserName="basalt")
    iam.put_user_policy(UserName="basalt", PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    creds = iam.create_access_key(UserName="basalt")["AccessKey"]
    yield endpoint, creds["AccessKeyId"], creds["SecretAccessKey"]
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def s3(s3_store):
    endpoint, key_id, secret = s3_store
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret)


def s3_server_config(base, endpoint: str) -> "os.PathLike":
    path = base / "s3.toml"
    path.write_text(TEST_CONFIG.read_text() + f"""
[s3]
endpoint = "{endpoint}"
path_style = true
allowed_buckets = ["{BUCKET}"]
access_key_id_env = "BASALT_TEST_S3_KEY_ID"
secret_access_key_env = "BASALT_TEST_S3_SECRET"
timeout_secs = 20
""")
    return path


def start_s3_server(base, s3_store, secret=None):
    endpoint, key_id, real_secret = s3_store
    return start_server(s3_server_config(base, endpoint), base, {
        "BASALT_TEST_S3_KEY_ID": key_id, "BASALT_TEST_S3_SECRET": secret or real_secret})


@pytest.fixture(scope="module")
def front(s3_store, tmp_path_factory):
    base = tmp_path_factory.mktemp("batch-s3")
    srv = start_s3_server(base, s3_store)
    yield srv
    crashed = stop_server(srv)
    assert crashed is None, f"the server crashed:\n{_tail(srv.log_path)}"


def bedrock(srv):
    key = srv.cli_json("keys", "create", "--name", f"s3-{uuid.uuid4().hex[:6]}", "--json")
    return boto3.session.Session().client(
        "bedrock", endpoint_url=srv.url, region_name="us-east-1", aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG)


@pytest.fixture(scope="module")
def control(front):
    return bedrock(front)


def records(n: int, prefix: str = "r") -> tuple[list[str], bytes]:
    ids = [f"{prefix}{i:04d}" for i in range(n)]
    lines = [json.dumps({"recordId": rid, "modelInput": {"prompt": chatml(f"Say the number {i}."),
                                                        "max_gen_len": 3, "temperature": 0}})
             for i, rid in enumerate(ids)]
    return ids, ("\n".join(lines) + "\n").encode()


def create(control, input_uri: str, output_uri: str):
    return control.create_model_invocation_job(
        jobName=f"s3-{uuid.uuid4().hex[:8]}", roleArn=ROLE, modelId=CHAT_MODEL,
        inputDataConfig={"s3InputDataConfig": {"s3InputFormat": "JSONL", "s3Uri": input_uri}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": output_uri}})["jobArn"]


def wait(control, arn, timeout=600, predicate=None):
    deadline = time.monotonic() + timeout
    while True:
        job = control.get_model_invocation_job(jobIdentifier=arn)
        if job["status"] in ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired") or (
                predicate and predicate(job)):
            return job
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout}s: {job}"
        time.sleep(0.3)


def read_lines(s3, key: str) -> list[dict]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines()]


def test_a_folder_of_jsonl_objects_runs_and_the_output_lands_under_the_job_id(control, s3):
    run = uuid.uuid4().hex[:8]
    ids_a, body_a = records(30, "a")
    ids_b, body_b = records(20, "b")
    s3.put_object(Bucket=BUCKET, Key=f"{run}/in/part-a.jsonl", Body=body_a)
    s3.put_object(Bucket=BUCKET, Key=f"{run}/in/part-b.jsonl", Body=body_b + b"not json\n")
    s3.put_object(Bucket=BUCKET, Key=f"{run}/in/README.txt", Body=b"not an input file")
    s3.put_object(Bucket=BUCKET, Key=f"{run}/in/nested/c.jsonl", Body=body_a)
    arn = create(control, f"s3://{BUCKET}/{run}/in/", f"s3://{BUCKET}/{run}/out/")
    job = wait(control, arn)
    assert job["status"] == "PartiallyCompleted", job
    job_id = arn.rsplit("/", 1)[1]
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{run}/out/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []))
    assert keys == [f"{run}/out/{job_id}/{name}" for name in
                    ("manifest.json.out", "part-a.jsonl.out", "part-b.jsonl.out")], keys
    a = read_lines(s3, f"{run}/out/{job_id}/part-a.jsonl.out")
    b = read_lines(s3, f"{run}/out/{job_id}/part-b.jsonl.out")
    assert sorted(line["recordId"] for line in a) == ids_a, "every record of part-a exactly once"
    assert sorted(line["recordId"] for line in b if "modelOutput" in line) == ids_b
    for line in a:
        assert line["modelOutput"]["generation_token_count"] >= 1 and line["modelInput"]["max_gen_len"] == 3
    errors = [line for line in b if "error" in line]
    assert len(errors) == 1 and errors[0]["error"]["errorCode"] == 400, errors
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{run}/out/{job_id}/manifest.json.out")["Body"].read())
    outputs = [line["modelOutput"] for line in a + b if "modelOutput" in line]
    assert manifest == {
        "totalRecordCount": 51, "processedRecordCount": 51, "successRecordCount": 50, "errorRecordCount": 1,
        "inputTokenCount": sum(o["prompt_token_count"] for o in outputs),
        "outputTokenCount": sum(o["generation_token_count"] for o in outputs),
    }
    assert job["inputDataConfig"]["s3InputDataConfig"]["s3Uri"] == f"s3://{BUCKET}/{run}/in/"


def test_one_object_as_input(control, s3):
    run = uuid.uuid4().hex[:8]
    ids, body = records(5)
    s3.put_object(Bucket=BUCKET, Key=f"{run}/records.jsonl", Body=body)
    arn = create(control, f"s3://{BUCKET}/{run}/records.jsonl", f"s3://{BUCKET}/{run}/out")
    assert wait(control, arn)["status"] == "Completed"
    lines = read_lines(s3, f"{run}/out/{arn.rsplit('/', 1)[1]}/records.jsonl.out")
    assert sorted(line["recordId"] for line in lines) == ids


def test_buckets_the_server_does_not_allow_are_refused(control):
    expect_client_error(lambda: create(control, f"s3://{OTHER_BUCKET}/in.jsonl", f"s3://{BUCKET}/out/"),
                        "AccessDeniedException", 403, message_contains=OTHER_BUCKET)
    expect_client_error(lambda: create(control, f"s3://{BUCKET}/in.jsonl", f"s3://{OTHER_BUCKET}/out/"),
                        "AccessDeniedException", 403, message_contains="allowed_buckets")
    expect_client_error(lambda: create(control, "s3://Not_A_Bucket/in.jsonl", f"s3://{BUCKET}/out/"),
                        "ValidationException", 400, message_contains="bucket name")


def test_missing_and_non_jsonl_input_fail_validation_with_a_clear_message(control, s3):
    run = uuid.uuid4().hex[:8]
    job = wait(control, create(control, f"s3://{BUCKET}/{run}/absent/", f"s3://{BUCKET}/{run}/out/"))
    assert job["status"] == "Failed" and "no .jsonl objects" in job["message"], job
    s3.put_object(Bucket=BUCKET, Key=f"{run}/letter.jsonl", Body=b"Dear team,\nthis is not JSONL.\n")
    job = wait(control, create(control, f"s3://{BUCKET}/{run}/letter.jsonl", f"s3://{BUCKET}/{run}/out/"))
    assert job["status"] == "Failed" and "not JSONL" in job["message"] and f"s3://{BUCKET}/" in job["message"], job


def test_wrong_credentials_fail_the_job_as_access_denied(s3_store, s3, tmp_path_factory):
    run = uuid.uuid4().hex[:8]
    _, body = records(2)
    s3.put_object(Bucket=BUCKET, Key=f"{run}/in.jsonl", Body=body)
    srv = start_s3_server(tmp_path_factory.mktemp("batch-s3-badkey"), s3_store, secret="wrong-secret")
    try:
        control = bedrock(srv)
        job = wait(control, create(control, f"s3://{BUCKET}/{run}/in.jsonl", f"s3://{BUCKET}/{run}/out/"))
        assert job["status"] == "Failed" and "credentials" in job["message"], job
    finally:
        stop_server(srv)


def test_a_killed_s3_job_resumes_from_its_staged_output(s3_store, s3, tmp_path_factory):
    run = uuid.uuid4().hex[:8]
    ids, body = records(300)
    s3.put_object(Bucket=BUCKET, Key=f"{run}/kill.jsonl", Body=body)
    base = tmp_path_factory.mktemp("batch-s3-kill")
    srv = start_s3_server(base, s3_store)
    try:
        control = bedrock(srv)
        arn = create(control, f"s3://{BUCKET}/{run}/kill.jsonl", f"s3://{BUCKET}/{run}/out/")
        wait(control, arn, predicate=lambda j: j.get("processedRecordCount", 0) >= 30)
        srv.proc.kill()  # SIGKILL mid-job
        srv.proc.wait(timeout=30)
    except BaseException:
        stop_server(srv)
        raise
    srv = start_s3_server(base, s3_store)
    try:
        job = wait(bedrock(srv), arn)
        assert job["status"] == "Completed", job
        lines = read_lines(s3, f"{run}/out/{arn.rsplit('/', 1)[1]}/kill.jsonl.out")
        assert sorted(line["recordId"] for line in lines) == ids, "every record exactly once after the restart"
        staging = srv.data_dir / "batch" / arn.rsplit("/", 1)[1]
        assert not staging.exists(), "the job's staging directory is removed once its output is uploaded"
    finally:
        stop_server(srv)


# ------------------------------------------------------------------- agents' apiSchema in S3

ORDERS_OPENAPI = {
    "openapi": "3.0.0", "info": {"title": "orders", "version": "1"},
    "paths": {"/orders/{orderId}": {"get": {
        "operationId": "getOrder", "description": "Look up an order",
        "parameters": [{"name": "orderId", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the order"}}}}},
}


def test_an_agents_api_schema_is_read_from_an_allowed_bucket(front, s3):
    key = front.cli_json("keys", "create", "--name", f"agents-s3-{uuid.uuid4().hex[:6]}", "--json")
    cp = boto3.session.Session().client(
        "bedrock-agent", endpoint_url=front.url, region_name="us-east-1", aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG)
    object_key = f"schemas/{uuid.uuid4().hex[:8]}/orders.json"
    s3.put_object(Bucket=BUCKET, Key=object_key, Body=json.dumps(ORDERS_OPENAPI).encode())
    agent_id = cp.create_agent(agentName=f"s3-schema-{uuid.uuid4().hex[:6]}", foundationModel=CHAT_MODEL,
                               instruction="You look up orders with the orders API when asked about them.",
                               agentResourceRoleArn=ROLE)["agent"]["agentId"]

    def group(bucket, key_):
        return cp.create_agent_action_group(
            agentId=agent_id, agentVersion="DRAFT", actionGroupName=f"g{uuid.uuid4().hex[:6]}",
            actionGroupExecutor={"customControl": "RETURN_CONTROL"},
            apiSchema={"s3": {"s3BucketName": bucket, "s3ObjectKey": key_}})["agentActionGroup"]

    created = group(BUCKET, object_key)
    assert created["apiSchema"] == {"s3": {"s3BucketName": BUCKET, "s3ObjectKey": object_key}}, created
    prepared = cp.prepare_agent(agentId=agent_id)
    assert prepared["agentStatus"] == "PREPARED", cp.get_agent(agentId=agent_id)["agent"].get("failureReasons")
    expect_client_error(lambda: group(BUCKET, "schemas/missing.json"), "ValidationException", 400)
    expect_client_error(lambda: group(OTHER_BUCKET, object_key), "AccessDeniedException", 403)
    s3.put_object(Bucket=BUCKET, Key=object_key + ".bad", Body=b"openapi: [unclosed")
    expect_client_error(lambda: group(BUCKET, object_key + ".bad"), "ValidationException", 400)


def test_a_customization_job_reads_and_writes_s3(control, s3):
    """Model customization with s3:// training and validation data and an s3:// output:
    Bedrock's metrics files and the GGUF adapter land under the job's folder."""
    prefix = f"ft-{uuid.uuid4().hex[:8]}"
    rows = [{"prompt": f"What is the code for {n}?", "completion": "The code is K-9."}
            for n in ("Ann", "Bob", "Cid", "Dee")]
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/train.jsonl",
                  Body="".join(json.dumps(r) + "\n" for r in rows).encode())
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/val.jsonl", Body=(json.dumps(rows[0]) + "\n").encode())
    arn = control.create_model_customization_job(
        jobName=prefix, customModelName=prefix, roleArn=ROLE, baseModelIdentifier=CHAT_MODEL,
        customizationType="FINE_TUNING", trainingDataConfig={"s3Uri": f"s3://{BUCKET}/{prefix}/train.jsonl"},
        validationDataConfig={"validators": [{"s3Uri": f"s3://{BUCKET}/{prefix}/val.jsonl"}]},
        outputDataConfig={"s3Uri": f"s3://{BUCKET}/{prefix}/out/"},
        hyperParameters={"epochCount": "1", "batchSize": "2"})["jobArn"]
    job_id = arn.rsplit("/", 1)[1]
    deadline = time.monotonic() + 300
    while (job := control.get_model_customization_job(jobIdentifier=arn))["status"] == "InProgress":
        assert time.monotonic() < deadline, f"the customization job is still running: {job}"
        time.sleep(0.3)
    assert job["status"] == "Completed", f"the s3 customization job ended {job['status']}: {job.get('failureMessage')!r}"
    root = f"{prefix}/out/model-customization-job-{job_id}/"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=root).get("Contents", [])
    keys = sorted(o["Key"][len(root):] for o in listed)
    assert keys == ["adapter/adapter.gguf", "training_artifacts/step_wise_training_metrics.csv",
                    "validation_artifacts/post_fine_tuning_validation/validation/validation_metrics.csv"], (
        f"objects under {root}: {keys}")
    metrics = s3.get_object(Bucket=BUCKET, Key=root + "training_artifacts/step_wise_training_metrics.csv")
    lines = metrics["Body"].read().decode().splitlines()
    assert lines[0] == "step_number,epoch_number,training_loss,perplexity" and len(lines) == 3, (
        f"the metrics file: {lines}")
    adapter = s3.get_object(Bucket=BUCKET, Key=root + "adapter/adapter.gguf")["Body"].read(4)
    assert adapter == b"GGUF", f"the adapter object is not GGUF: {adapter!r}"
    # Buckets the server does not allow are refused before anything runs.
    expect_client_error(lambda: control.create_model_customization_job(
        jobName=f"{prefix}-x", customModelName=f"{prefix}-x", roleArn=ROLE, baseModelIdentifier=CHAT_MODEL,
        trainingDataConfig={"s3Uri": f"s3://{OTHER_BUCKET}/train.jsonl"},
        outputDataConfig={"s3Uri": f"s3://{BUCKET}/{prefix}/out/"}), "AccessDeniedException", 403)
