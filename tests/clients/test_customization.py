"""Model customization through boto3: LoRA fine-tuning of the local SmolLM2 model with
CreateModelCustomizationJob, Get, List and Stop, and the custom models it makes
(GetCustomModel, ListCustomModels, DeleteCustomModel), served only through
provisioned throughput.

- End to end: a made-up fact ("the secret code for <name> is BASALT-7") that the base
  model does not know is learned from 8 names and then answered for 4 held-out names
  through a provisioned throughput on the custom model; the job's and the custom
  model's fields, the step-wise training and validation metrics CSV files under the
  file:// output location, and the list filters are checked.
- Data is validated in the job before training: bad lines fail the job with one
  "line N: ..." entry each and make no custom model; CONTINUED_PRE_TRAINING wants
  {"input": ...} records; conversation-format records train.
- Create-time refusals: hyperparameters out of range (the message names the key and its
  range), missing fields, file:// locations outside the allowed directories, duplicate
  job or custom model names, a base model that cannot be fine-tuned, unknown ids.
- Stop: a long job stopped mid-training ends Stopped with no custom model.
- Durability: a job whose server is killed with SIGKILL mid-training resumes from its
  last checkpoint after a restart, and its metrics CSV has every step exactly once.

Training is kept tiny (a few steps over short records) so the module runs in about two
minutes on two CPU cores. Every provisioned throughput bought here is given back."""
from __future__ import annotations

import csv
import json
import math
import re
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from basalt_support import (
    CHAT_MODEL,
    EMBED_MODEL,
    REGION,
    UNKNOWN_MODEL,
    converse_text,
    expect_client_error,
    user_msg,
)
from conftest import BOTO_CONFIG, TEST_CONFIG, start_server, stop_server
from test_batch import bedrock_client
from test_provisioned import provisioned

ROLE = "arn:aws:iam::000000000000:role/basalt-customization"
FM_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{CHAT_MODEL}"
JOB_ARN_RE = re.compile(
    r"arn:aws:bedrock:us-east-1:\d{12}:model-customization-job/" + re.escape(CHAT_MODEL) + r"/[a-z0-9]{12}")
MODEL_ARN_RE = re.compile(
    r"arn:aws:bedrock:us-east-1:\d{12}:custom-model/" + re.escape(CHAT_MODEL) + r"/[a-z0-9]{12}")
FINAL = ("Completed", "Failed", "Stopped")
TRAIN_HEADER = ["step_number", "epoch_number", "training_loss", "perplexity"]
VALIDATION_HEADER = ["step_number", "epoch_number", "validation_loss", "perplexity"]
# The spec answers a duplicate job or custom model name with ConflictException; Bedrock's
# model (and Basalt's other control-plane conflicts) give it HTTP 400, the spec says 409.
CONFLICT = {("ConflictException", 409), ("ConflictException", 400)}


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def fresh(prefix: str) -> str:
    """A name no other test uses (valid as a job name and as a custom model name)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def workdir(root: Path) -> Path:
    """A fresh directory under `root` (a directory the server allows file:// URIs in)."""
    path = root / fresh("cust")
    path.mkdir(parents=True)
    return path


def write_jsonl(path: Path, records) -> Path:
    """One line per record: dicts as JSON, strings written as they are (for bad lines)."""
    with path.open("w") as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


def uri(path: Path, directory: bool = False) -> str:
    return f"file://{path}" + ("/" if directory else "")


class Created(NamedTuple):
    arn: str
    job_id: str
    name: str
    model_name: str
    out: Path


def create_job(control, train: Path, out: Path, *, job_name: str | None = None, model_name: str | None = None,
               base: str = CHAT_MODEL, customization_type: str = "FINE_TUNING", hyper: dict | None = None,
               validation: Path | None = None, **kw) -> Created:
    """CreateModelCustomizationJob with file:// locations; checks the 201 and the job ARN."""
    job_name = job_name or fresh("job")
    model_name = model_name or fresh("cm")
    args = dict(jobName=job_name, customModelName=model_name, roleArn=ROLE, baseModelIdentifier=base,
                customizationType=customization_type, trainingDataConfig={"s3Uri": uri(train)},
                outputDataConfig={"s3Uri": uri(out, directory=True)}, **kw)
    if hyper is not None:
        args["hyperParameters"] = hyper
    if validation is not None:
        args["validationDataConfig"] = {"validators": [{"s3Uri": uri(validation)}]}
    resp = control.create_model_customization_job(**args)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201, (
        f"CreateModelCustomizationJob must answer HTTP 201, got {resp['ResponseMetadata']['HTTPStatusCode']}")
    arn = resp["jobArn"]
    assert JOB_ARN_RE.fullmatch(arn), f"CreateModelCustomizationJob returned a malformed jobArn {arn!r}"
    return Created(arn, arn.rsplit("/", 1)[1], job_name, model_name, out)


def training_status(job: dict) -> str | None:
    return ((job.get("statusDetails") or {}).get("trainingDetails") or {}).get("status")


def wait_job(control, arn: str, until=FINAL, timeout: float = 300, predicate=None) -> dict:
    """Poll GetModelCustomizationJob until its status is in `until` (or `predicate(job)`)."""
    deadline = time.monotonic() + timeout
    while True:
        job = control.get_model_customization_job(jobIdentifier=arn)
        if job["status"] in until or (predicate and predicate(job)):
            return job
        assert time.monotonic() < deadline, (
            f"customization job still {job['status']} (training {training_status(job)}) after {timeout}s: {job}")
        time.sleep(0.3)


def job_dir(out: Path, job_id: str) -> Path:
    return out / f"model-customization-job-{job_id}"


def training_csv(created: Created) -> Path:
    return job_dir(created.out, created.job_id) / "training_artifacts" / "step_wise_training_metrics.csv"


def validation_csv(created: Created) -> Path:
    return (job_dir(created.out, created.job_id) / "validation_artifacts" / "post_fine_tuning_validation"
            / "validation" / "validation_metrics.csv")


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    """(header, rows) of a metrics CSV; step/epoch as int, the other columns as float."""
    assert path.is_file(), f"metrics file {path} was not written"
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows = []
        for n, values in enumerate(reader, start=2):
            if not values:
                continue
            assert len(values) == len(header), f"{path.name} line {n} has {len(values)} fields: {values!r}"
            row = {}
            for name, value in zip(header, values):
                try:
                    row[name] = int(value) if name in ("step_number", "epoch_number") else float(value)
                except ValueError:
                    raise AssertionError(f"{path.name} line {n}: {name} is not a number: {value!r}") from None
            rows.append(row)
    return header, rows


def complete_rows(path: Path) -> int:
    """Data rows of a CSV the server may be appending to right now (a partial last line
    does not count); 0 while it does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    lines = text.split("\n")[:-1]  # the last piece is "" or a line still being written
    return max(0, len([line for line in lines if line.strip()]) - 1)


def check_perplexity(rows: list[dict], loss_column: str, what: str) -> None:
    for row in rows:
        loss, perplexity = row[loss_column], row["perplexity"]
        assert math.isfinite(loss) and loss >= 0, f"{what}: step {row['step_number']} has loss {loss}"
        assert math.isclose(perplexity, math.exp(loss), rel_tol=1e-3, abs_tol=1e-2), (
            f"{what}: step {row['step_number']} perplexity {perplexity} is not exp({loss}) = {math.exp(loss)}")


def list_all(call, key: str, **kw) -> list[dict]:
    """Every item of a paginated List call, following nextToken."""
    items, token = [], None
    for _ in range(1000):
        resp = call(**kw, **({"nextToken": token} if token else {}))
        items += resp[key]
        token = resp.get("nextToken")
        if not token:
            return items
    raise AssertionError(f"{key}: nextToken never ran out")


def jobs_named(control, name: str) -> list[dict]:
    return list_all(control.list_model_customization_jobs, "modelCustomizationJobSummaries", nameContains=name)


def models_named(control, name: str) -> list[dict]:
    return list_all(control.list_custom_models, "modelSummaries", nameContains=name)


def expect_one_of(call, allowed: set, *, message_contains: str | None = None) -> ClientError:
    """Like expect_client_error, where the spec accepts several (code, HTTP status) pairs."""
    with pytest.raises(ClientError) as excinfo:
        call()
    resp = excinfo.value.response
    got = (resp.get("Error", {}).get("Code"), resp.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    assert got in allowed, (
        f"expected one of {sorted(allowed)}, got {got[0]} / HTTP {got[1]}; error: {resp.get('Error')}")
    message = resp["Error"].get("Message")
    assert message, f"{got[0]} carries no message"
    if message_contains is not None:
        assert message_contains in message, f"{got[0]} message should mention {message_contains!r}, got {message!r}"
    return excinfo.value


def no_custom_model(control, model_name: str, why: str) -> None:
    expect_client_error(lambda: control.get_custom_model(modelIdentifier=model_name),
                        "ResourceNotFoundException", 404)
    assert models_named(control, model_name) == [], f"{why}, yet ListCustomModels shows a custom model {model_name}"


@pytest.fixture(scope="module")
def lax_control(server, key):
    """A bedrock client that sends requests botocore would refuse (missing required members)."""
    return boto3.session.Session().client(
        "bedrock", endpoint_url=server.url, region_name=REGION, aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key, config=BOTO_CONFIG.merge(Config(parameter_validation=False)))


@pytest.fixture(scope="module")
def tiny_train(batch_root) -> Path:
    """A valid two-record FINE_TUNING file for requests that must be refused before training."""
    return write_jsonl(workdir(batch_root) / "tiny.jsonl", [
        {"prompt": "Say yes.", "completion": "Yes."},
        {"prompt": "Say no.", "completion": "No."},
    ])


# --------------------------------------------------------------------------
# 1. It learns, end to end
# --------------------------------------------------------------------------

NAMES = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel",
         "India", "Juliett", "Kilo", "Lima"]
TRAIN_NAMES, HELD_OUT = NAMES[:8], NAMES[8:]
TARGET = "The secret code is BASALT-7."
FACT_HYPER = {"epochCount": "3", "batchSize": "2", "learningRate": "0.002", "learningRateWarmupSteps": "2",
              "loraRank": "8", "loraAlpha": "16", "loraTargetModules": "q_proj,v_proj,o_proj", "seed": "1"}


def fact(name: str) -> dict:
    return {"prompt": question(name), "completion": TARGET}


def question(name: str) -> str:
    return f"What is the secret code for {name}?"


def ask(runtime, model_id: str, name: str) -> str:
    resp = runtime.converse(modelId=model_id, messages=[user_msg(question(name))],
                            inferenceConfig={"temperature": 0, "maxTokens": 20})
    return converse_text(resp).strip()


@pytest.fixture(scope="module")
def learned(control, runtime, batch_root):
    """One fine-tuning job on the secret-code fact, run to completion and shared by the tests."""
    base_answers = {name: ask(runtime, CHAT_MODEL, name) for name in HELD_OUT}
    work = workdir(batch_root)
    train = write_jsonl(work / "train.jsonl", [fact(n) for n in TRAIN_NAMES])
    val = write_jsonl(work / "val.jsonl", [fact(n) for n in HELD_OUT[:2]])
    created = create_job(control, train, work / "out", hyper=FACT_HYPER, validation=val)
    job = wait_job(control, created.arn)
    assert job["status"] == "Completed", (
        f"the fine-tuning job ended {job['status']}: {job.get('failureMessage')!r}")
    model = control.get_custom_model(modelIdentifier=created.model_name)
    return {"created": created, "job": job, "model": model, "train": train, "val": val,
            "base_answers": base_answers}


def test_a_fine_tuned_model_learns_a_fact_end_to_end(control, runtime, learned):
    created, job, model = learned["created"], learned["job"], learned["model"]

    # Before: the base model does not know the made-up fact.
    knew = {n: a for n, a in learned["base_answers"].items() if a == TARGET}
    assert not knew, f"the base model already answers {TARGET!r} for {sorted(knew)}: the task proves nothing"

    # The job.
    assert job["jobArn"] == created.arn and job["jobName"] == created.name, f"job identity wrong: {job}"
    assert job["outputModelName"] == created.model_name, f"outputModelName is {job.get('outputModelName')!r}"
    assert MODEL_ARN_RE.fullmatch(job.get("outputModelArn", "")), f"bad outputModelArn {job.get('outputModelArn')!r}"
    assert job["roleArn"] == ROLE, f"roleArn not echoed: {job['roleArn']!r}"
    assert job["baseModelArn"] == FM_ARN, f"baseModelArn is {job['baseModelArn']!r}, expected {FM_ARN}"
    assert job["customizationType"] == "FINE_TUNING", f"customizationType is {job.get('customizationType')!r}"
    assert job["hyperParameters"] == FACT_HYPER, f"hyperParameters not echoed as given: {job.get('hyperParameters')}"
    assert job["trainingDataConfig"]["s3Uri"] == uri(learned["train"]), f"trainingDataConfig: {job['trainingDataConfig']}"
    assert job["validationDataConfig"] == {"validators": [{"s3Uri": uri(learned["val"])}]}, (
        f"validationDataConfig: {job['validationDataConfig']}")
    assert job["outputDataConfig"]["s3Uri"] == uri(created.out, directory=True), (
        f"outputDataConfig: {job['outputDataConfig']}")
    assert "failureMessage" not in job, f"a Completed job carries a failureMessage: {job['failureMessage']!r}"
    assert job["creationTime"] <= job["lastModifiedTime"] and job["creationTime"] <= job["endTime"], (
        f"job times out of order: created {job['creationTime']}, modified {job['lastModifiedTime']}, "
        f"ended {job.get('endTime')}")
    for stage in ("validationDetails", "dataProcessingDetails", "trainingDetails"):
        detail = job["statusDetails"][stage]
        assert detail["status"] == "Completed", f"statusDetails.{stage} of a Completed job: {detail}"
        assert detail["creationTime"] <= detail["lastModifiedTime"], f"statusDetails.{stage} times: {detail}"
    again = control.get_model_customization_job(jobIdentifier=created.job_id)
    assert again["jobArn"] == created.arn, "GetModelCustomizationJob by the 12-character id finds another job"

    # The metrics files: 3 epochs x ceil(8 / 2) = 12 steps.
    header, rows = read_csv(training_csv(created))
    assert header == TRAIN_HEADER, f"step_wise_training_metrics.csv header is {header}"
    assert [r["step_number"] for r in rows] == list(range(12)), (
        f"training steps should be 0..11, got {[r['step_number'] for r in rows]}")
    assert [r["epoch_number"] for r in rows] == [s // 4 + 1 for s in range(12)], (
        f"epoch numbers should be 1,1,1,1,2,...,3, got {[r['epoch_number'] for r in rows]}")
    check_perplexity(rows, "training_loss", "training metrics")
    assert rows[-1]["training_loss"] < rows[0]["training_loss"], (
        f"training loss did not fall: first {rows[0]['training_loss']}, last {rows[-1]['training_loss']}")
    loss = job["trainingMetrics"]["trainingLoss"]
    assert math.isclose(loss, rows[-1]["training_loss"], rel_tol=1e-3), (
        f"trainingMetrics.trainingLoss {loss} is not the last CSV row's loss {rows[-1]['training_loss']}")
    header, vrows = read_csv(validation_csv(created))
    assert header == VALIDATION_HEADER, f"validation_metrics.csv header is {header}"
    assert vrows, "validation_metrics.csv has no rows"
    check_perplexity(vrows, "validation_loss", "validation metrics")
    vm = job.get("validationMetrics")
    assert isinstance(vm, list) and len(vm) == 1 and isinstance(vm[0]["validationLoss"], (int, float)), (
        f"validationMetrics should hold one validationLoss per validator, got {vm}")
    assert math.isfinite(vm[0]["validationLoss"]), f"validationLoss is {vm[0]['validationLoss']}"

    # The custom model.
    assert model["modelArn"] == job["outputModelArn"], (
        f"custom model ARN {model['modelArn']} is not the job's outputModelArn {job['outputModelArn']}")
    assert (model["modelName"], model["jobName"], model["jobArn"]) == (created.model_name, created.name, created.arn), (
        f"custom model does not name its job: {model}")
    assert model["baseModelArn"] == FM_ARN, f"custom model baseModelArn {model['baseModelArn']!r}"
    assert model["customizationType"] == "FINE_TUNING", f"custom model customizationType {model.get('customizationType')!r}"
    assert model["hyperParameters"] == FACT_HYPER, f"custom model hyperParameters {model.get('hyperParameters')}"
    assert model["trainingDataConfig"] == job["trainingDataConfig"], f"custom model trainingDataConfig {model}"
    assert model["outputDataConfig"] == job["outputDataConfig"], f"custom model outputDataConfig {model}"
    assert model["trainingMetrics"] == job["trainingMetrics"], (
        f"custom model trainingMetrics {model.get('trainingMetrics')} differ from the job's {job['trainingMetrics']}")
    assert model.get("validationMetrics") == job["validationMetrics"], (
        f"custom model validationMetrics {model.get('validationMetrics')} differ from the job's")
    assert model["modelStatus"] == "Active", f"custom model status {model.get('modelStatus')!r}"
    assert model["creationTime"] >= job["creationTime"], "custom model created before its job"
    by_arn = control.get_custom_model(modelIdentifier=model["modelArn"])
    assert by_arn["modelName"] == created.model_name, "GetCustomModel by ARN finds another model"

    # Lists.
    completed = list_all(control.list_model_customization_jobs, "modelCustomizationJobSummaries",
                         statusEquals="Completed")
    assert created.arn in [s["jobArn"] for s in completed], "statusEquals=Completed does not list the completed job"
    failed = list_all(control.list_model_customization_jobs, "modelCustomizationJobSummaries", statusEquals="Failed")
    assert created.arn not in [s["jobArn"] for s in failed], "statusEquals=Failed lists a completed job"
    named = jobs_named(control, created.name)
    assert [s["jobArn"] for s in named] == [created.arn], f"nameContains={created.name} lists {named}"
    summary = named[0]
    assert (summary["jobName"], summary["status"], summary["baseModelArn"], summary["customModelName"],
            summary.get("customModelArn"), summary["customizationType"]) == (
        created.name, "Completed", FM_ARN, created.model_name, model["modelArn"], "FINE_TUNING"), (
        f"job summary fields wrong: {summary}")
    assert summary["creationTime"] <= summary["lastModifiedTime"] and summary["endTime"] >= summary["creationTime"], (
        f"job summary times: {summary}")
    for order, ok in (("Ascending", lambda a, b: a <= b), ("Descending", lambda a, b: a >= b)):
        listed = list_all(control.list_model_customization_jobs, "modelCustomizationJobSummaries",
                          sortBy="CreationTime", sortOrder=order)
        times = [s["creationTime"] for s in listed]
        assert all(ok(a, b) for a, b in zip(times, times[1:])), f"jobs not sorted {order} by creationTime: {times}"
    everything = list_all(control.list_model_customization_jobs, "modelCustomizationJobSummaries")
    first = control.list_model_customization_jobs(maxResults=1)
    assert len(first["modelCustomizationJobSummaries"]) == 1, "maxResults=1 returned more than one job"
    if len(everything) > 1:
        assert first.get("nextToken"), "maxResults=1 with more jobs left gives no nextToken"
    paged = list_all(control.list_model_customization_jobs, "modelCustomizationJobSummaries", maxResults=1)
    assert sorted(s["jobArn"] for s in paged) == sorted(s["jobArn"] for s in everything), (
        "paging with maxResults=1 does not visit every job exactly once")

    models = models_named(control, created.model_name)
    assert [m["modelArn"] for m in models] == [model["modelArn"]], f"nameContains lists {models}"
    m = models[0]
    assert (m["modelName"], m["baseModelArn"], m["customizationType"], m["modelStatus"]) == (
        created.model_name, FM_ARN, "FINE_TUNING", "Active"), f"custom model summary fields wrong: {m}"
    assert isinstance(m["baseModelName"], str) and m["baseModelName"], f"summary baseModelName is {m.get('baseModelName')!r}"
    on_base = list_all(control.list_custom_models, "modelSummaries", baseModelArnEquals=FM_ARN,
                       sortBy="CreationTime", sortOrder="Descending")
    assert model["modelArn"] in [s["modelArn"] for s in on_base], "baseModelArnEquals=<base> does not list the model"
    other = list_all(control.list_custom_models, "modelSummaries",
                     baseModelArnEquals=f"arn:aws:bedrock:us-east-1::foundation-model/{EMBED_MODEL}")
    assert model["modelArn"] not in [s["modelArn"] for s in other], "baseModelArnEquals=<another base> lists the model"

    # After: the custom model, through provisioned throughput, knows the fact for names it never saw.
    with provisioned(control, model=model["modelArn"]) as pt_arn:
        answers = {name: ask(runtime, pt_arn, name) for name in HELD_OUT}
    right = [n for n, a in answers.items() if a == TARGET]
    assert len(right) >= 3, f"the fine-tuned model answers {TARGET!r} for only {right} of {HELD_OUT}: {answers}"


# --------------------------------------------------------------------------
# 2. Custom models are served only through provisioned throughput
# --------------------------------------------------------------------------


def test_a_custom_model_is_invoked_only_through_provisioned_throughput(runtime, learned):
    arn = learned["model"]["modelArn"]
    expect_client_error(
        lambda: runtime.converse(modelId=arn, messages=[user_msg(question("India"))],
                                 inferenceConfig={"maxTokens": 5}),
        "ValidationException", 400, message_contains="provisioned throughput")


# --------------------------------------------------------------------------
# 3. and 4. Data validation, formats and continued pre-training
# --------------------------------------------------------------------------


def test_bad_training_lines_fail_the_job_with_each_line_named(control, batch_root):
    work = workdir(batch_root)
    train = write_jsonl(work / "bad.jsonl", [
        fact("Alpha"),
        "this line is not JSON",
        {"prompt": question("Bravo")},
        fact("Charlie"),
    ])
    created = create_job(control, train, work / "out", hyper={"epochCount": "1", "batchSize": "2"})
    job = wait_job(control, created.arn)
    assert job["status"] == "Failed", f"a job with bad training lines ended {job['status']}"
    message = job.get("failureMessage") or ""
    assert "line 2:" in message and "line 3:" in message, f"failureMessage should list lines 2 and 3: {message!r}"
    assert "completion" in message, f"failureMessage should say line 3 lacks \"completion\": {message!r}"
    assert "line 1:" not in message and "line 4:" not in message, f"failureMessage lists good lines: {message!r}"
    assert "outputModelArn" not in job, f"a Failed job names an output model {job.get('outputModelArn')}"
    assert job["endTime"] >= job["creationTime"], "a Failed job has no endTime after its creation"
    assert training_status(job) != "Completed", f"training Completed on bad data: {job['statusDetails']}"
    no_custom_model(control, created.model_name, "the job failed")
    failed = list_all(control.list_model_customization_jobs, "modelCustomizationJobSummaries", statusEquals="Failed")
    assert created.arn in [s["jobArn"] for s in failed], "statusEquals=Failed does not list the failed job"


def test_continued_pre_training_wants_input_records(control, batch_root):
    work = workdir(batch_root)
    wrong = write_jsonl(work / "pairs.jsonl", [fact(n) for n in NAMES[:4]])
    created = create_job(control, wrong, work / "out", customization_type="CONTINUED_PRE_TRAINING",
                         hyper={"epochCount": "1", "batchSize": "2"})
    job = wait_job(control, created.arn)
    assert job["status"] == "Failed", f"CONTINUED_PRE_TRAINING on prompt/completion records ended {job['status']}"
    message = job.get("failureMessage") or ""
    assert "CONTINUED_PRE_TRAINING" in message or "input" in message, (
        f"failureMessage should say CONTINUED_PRE_TRAINING wants \"input\" records: {message!r}")
    no_custom_model(control, created.model_name, "the job failed")

    texts = ["Basalt is a dark volcanic rock.", "Lava cools into basalt columns.",
             "Basalt makes up most of the ocean floor.", "Iceland is built of basalt."]
    good = write_jsonl(work / "corpus.jsonl", [{"input": t} for t in texts])
    created = create_job(control, good, work / "out", customization_type="CONTINUED_PRE_TRAINING",
                         hyper={"epochCount": "1", "batchSize": "2"})
    job = wait_job(control, created.arn)
    assert job["status"] == "Completed", f"a valid CONTINUED_PRE_TRAINING job ended {job['status']}: {job.get('failureMessage')!r}"
    assert job["customizationType"] == "CONTINUED_PRE_TRAINING", f"job customizationType {job.get('customizationType')!r}"
    header, rows = read_csv(training_csv(created))
    assert header == TRAIN_HEADER, f"CPT step_wise_training_metrics.csv header is {header}"
    assert [(r["step_number"], r["epoch_number"]) for r in rows] == [(0, 1), (1, 1)], (
        f"1 epoch x ceil(4 / 2) should give steps 0 and 1 of epoch 1, got {rows}")
    assert "validationMetrics" not in job or not job["validationMetrics"], (
        f"validationMetrics without validators: {job.get('validationMetrics')}")
    model = control.get_custom_model(modelIdentifier=created.model_name)
    assert model["customizationType"] == "CONTINUED_PRE_TRAINING", f"custom model type {model.get('customizationType')!r}"
    assert control.delete_custom_model(modelIdentifier=model["modelArn"])["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_conversation_records_train_and_names_are_unique(control, batch_root):
    """Bedrock's conversation format trains; the base model may be named by its ARN; every
    Basalt hyperparameter is accepted and echoed; names already taken are refused."""
    work = workdir(batch_root)
    convo = [{"schemaVersion": "bedrock-conversation-2024", "system": [{"text": "You answer in one word."}],
              "messages": [{"role": "user", "content": [{"text": q}]},
                           {"role": "assistant", "content": [{"text": a}]}]}
             for q, a in (("Say hi.", "Hi."), ("Say bye.", "Bye."))]
    train = write_jsonl(work / "convo.jsonl", convo)
    hyper = {"epochCount": "1", "batchSize": "2", "learningRate": "0.0001", "learningRateWarmupSteps": "0",
             "loraRank": "4", "loraAlpha": "8",
             "loraTargetModules": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
             "loraLayers": "2", "maxSequenceLength": "128", "seed": "7", "weightDecay": "0.01"}
    created = create_job(control, train, work / "out", base=FM_ARN, hyper=hyper)
    # Open (or just finished), its names are taken.
    expect_one_of(lambda: create_job(control, train, work / "out", job_name=created.name, hyper=hyper), CONFLICT)
    expect_one_of(lambda: create_job(control, train, work / "out", model_name=created.model_name, hyper=hyper),
                  CONFLICT)
    assert [s["jobArn"] for s in jobs_named(control, created.name)] == [created.arn], (
        "a refused duplicate job name created a job")
    job = wait_job(control, created.arn)
    assert job["status"] == "Completed", f"a conversation-format job ended {job['status']}: {job.get('failureMessage')!r}"
    assert job["baseModelArn"] == FM_ARN, f"baseModelArn {job['baseModelArn']!r} for a base given by ARN"
    assert job["hyperParameters"] == hyper, f"hyperParameters not echoed as given: {job.get('hyperParameters')}"
    _, rows = read_csv(training_csv(created))
    assert len(rows) == 1, f"1 epoch x ceil(2 / 2) should be 1 step, got {len(rows)} rows"
    # Now a custom model holds the name.
    expect_one_of(lambda: create_job(control, train, work / "out", model_name=created.model_name, hyper=hyper),
                  CONFLICT)
    expect_client_error(lambda: control.stop_model_customization_job(jobIdentifier=created.arn),
                        "ValidationException", 400)
    assert control.delete_custom_model(modelIdentifier=created.model_name)["ResponseMetadata"]["HTTPStatusCode"] == 200


# --------------------------------------------------------------------------
# 5. and 6. Refused at create time
# --------------------------------------------------------------------------


@pytest.mark.parametrize("param, value, mentions", [
    ("epochCount", "0", ["epochCount", "1", "10"]),
    ("epochCount", "11", ["epochCount", "1", "10"]),
    ("batchSize", "65", ["batchSize", "64"]),
    ("learningRate", "abc", ["learningRate"]),
    ("learningRateWarmupSteps", "251", ["learningRateWarmupSteps", "250"]),
    ("loraRank", "65", ["loraRank", "64"]),
    ("loraAlpha", "0", ["loraAlpha", "1024"]),
    ("unknownKey", "1", ["unknownKey"]),
    ("loraTargetModules", "lm_head", ["loraTargetModules"]),
])
def test_bad_hyperparameters_are_refused_with_the_range(control, batch_root, tiny_train, param, value, mentions):
    name = fresh("hp")
    err = expect_client_error(
        lambda: create_job(control, tiny_train, batch_root / "hp-out", job_name=name,
                           hyper={"epochCount": "1", "batchSize": "2", param: value}),
        "ValidationException", 400)
    message = err.response["Error"]["Message"]
    missing = [m for m in mentions if m not in message]
    assert not missing, f"{param}={value!r}: the message should mention {missing}: {message!r}"
    assert jobs_named(control, name) == [], f"{param}={value!r} was refused, yet a job {name} exists"


def test_bad_requests_are_refused(control, lax_control, batch_root, tiny_train, tmp_path):
    out = batch_root / "refused-out"
    for member in ("trainingDataConfig", "customModelName", "outputDataConfig"):
        args = dict(jobName=fresh("job"), customModelName=fresh("cm"), roleArn=ROLE, baseModelIdentifier=CHAT_MODEL,
                    trainingDataConfig={"s3Uri": uri(tiny_train)}, outputDataConfig={"s3Uri": uri(out, True)})
        del args[member]
        expect_client_error(lambda: lax_control.create_model_customization_job(**args), "ValidationException", 400,
                            message_contains=member)

    outside = write_jsonl(tmp_path / "outside.jsonl", [{"prompt": "Hi", "completion": "Hi."}])
    expect_client_error(lambda: create_job(control, outside, out), "AccessDeniedException", 403)
    expect_client_error(lambda: create_job(control, tiny_train, tmp_path / "out"), "AccessDeniedException", 403)
    expect_client_error(lambda: create_job(control, tiny_train, out, validation=outside), "AccessDeniedException", 403)
    sneaky = Path(f"{batch_root}/../{tmp_path.name}/outside.jsonl")  # batch_root and tmp_path are siblings
    expect_client_error(lambda: create_job(control, sneaky, out), "AccessDeniedException", 403)
    expect_client_error(lambda: create_job(control, batch_root / "no-such-file.jsonl", out), "ValidationException", 400)

    expect_client_error(lambda: create_job(control, tiny_train, out, base=EMBED_MODEL), "ValidationException", 400)
    expect_one_of(lambda: create_job(control, tiny_train, out, base=UNKNOWN_MODEL),
                  {("ResourceNotFoundException", 404), ("ValidationException", 400)})

    expect_client_error(lambda: control.get_model_customization_job(jobIdentifier="zzzzzzzzzzzz"),
                        "ResourceNotFoundException", 404)
    missing_arn = f"arn:aws:bedrock:us-east-1:000000000000:model-customization-job/{CHAT_MODEL}/zzzzzzzzzzzz"
    expect_client_error(lambda: control.get_model_customization_job(jobIdentifier=missing_arn),
                        "ResourceNotFoundException", 404)
    expect_client_error(lambda: control.stop_model_customization_job(jobIdentifier="zzzzzzzzzzzz"),
                        "ResourceNotFoundException", 404)
    expect_client_error(lambda: control.get_custom_model(modelIdentifier=fresh("nosuchmodel")),
                        "ResourceNotFoundException", 404)


# --------------------------------------------------------------------------
# 7. Stop
# --------------------------------------------------------------------------


def counting_records(n: int) -> list[dict]:
    return [{"prompt": f"Name the number {i}.", "completion": f"The number is {i}."} for i in range(n)]


def test_a_stopped_job_makes_no_custom_model(control, batch_root):
    work = workdir(batch_root)
    train = write_jsonl(work / "long.jsonl", counting_records(16))
    created = create_job(control, train, work / "out", hyper={"epochCount": "10", "batchSize": "1"})
    metrics = training_csv(created)
    job = wait_job(control, created.arn, predicate=lambda j: training_status(j) == "InProgress"
                   and complete_rows(metrics) >= 1)
    assert job["status"] == "InProgress", f"the 160-step job ended {job['status']} before it could be stopped"
    resp = control.stop_model_customization_job(jobIdentifier=created.arn)
    assert {k: v for k, v in resp.items() if k != "ResponseMetadata"} == {}, f"StopModelCustomizationJob answered {resp}"
    status = control.get_model_customization_job(jobIdentifier=created.arn)["status"]
    assert status in ("Stopping", "Stopped"), f"right after StopModelCustomizationJob the job is {status}"
    job = wait_job(control, created.arn, timeout=60)
    assert job["status"] == "Stopped", f"a stopped job ended {job['status']}: {job.get('failureMessage')!r}"
    assert training_status(job) != "InProgress", f"training still InProgress in a Stopped job: {job['statusDetails']}"
    assert "outputModelArn" not in job, f"a Stopped job names an output model {job.get('outputModelArn')}"
    assert job["endTime"] >= job["creationTime"], "a Stopped job has no endTime after its creation"
    assert complete_rows(metrics) < 160, "the stopped job trained every step anyway"
    no_custom_model(control, created.model_name, "the job was stopped")
    stopped = list_all(control.list_model_customization_jobs, "modelCustomizationJobSummaries", statusEquals="Stopped")
    assert created.arn in [s["jobArn"] for s in stopped], "statusEquals=Stopped does not list the stopped job"
    expect_client_error(lambda: control.stop_model_customization_job(jobIdentifier=created.arn),
                        "ValidationException", 400)


# --------------------------------------------------------------------------
# 8. A job survives kill -9 of its server
# --------------------------------------------------------------------------


def test_a_killed_job_resumes_from_its_checkpoint(tmp_path_factory, _hermetic_client_env):
    base = tmp_path_factory.mktemp("customization-kill")
    root = base / "root"
    root.mkdir()
    env = {"BASALT_ALLOWED_PATHS": str(root)}
    srv = start_server(TEST_CONFIG, base, env)
    try:
        key = srv.cli_json("keys", "create", "--name", "customization", "--json")
        control = bedrock_client(srv, key)
        train = write_jsonl(root / "kill.jsonl", counting_records(20))
        created = create_job(control, train, root / "out", hyper={"epochCount": "2", "batchSize": "1"})
        metrics = training_csv(created)
        job = wait_job(control, created.arn, predicate=lambda j: training_status(j) == "InProgress"
                       and complete_rows(metrics) >= 8)
        assert job["status"] == "InProgress", f"the 40-step job ended {job['status']} before the kill"
        srv.proc.kill()  # SIGKILL: no shutdown, no flush
        srv.proc.wait(timeout=30)
    except BaseException:
        stop_server(srv)
        raise
    done_before = complete_rows(metrics)
    srv = start_server(TEST_CONFIG, base, env)
    try:
        control = bedrock_client(srv, key)
        job = wait_job(control, created.arn)
        assert job["status"] == "Completed", (
            f"the job killed after {done_before} steps ended {job['status']} after the restart: "
            f"{job.get('failureMessage')!r}")
        header, rows = read_csv(metrics)
        assert header == TRAIN_HEADER, f"step_wise_training_metrics.csv header after the restart is {header}"
        steps = [r["step_number"] for r in rows]
        assert sorted(steps) == list(range(40)), (
            f"after the restart the metrics should have steps 0..39 exactly once, got {len(rows)} rows: {steps}")
        epochs = {r["step_number"]: r["epoch_number"] for r in rows}
        assert all(epochs[s] == s // 20 + 1 for s in range(40)), f"epoch numbers wrong after the restart: {epochs}"
        check_perplexity(rows, "training_loss", "training metrics after the restart")
        last = max(rows, key=lambda r: r["step_number"])
        assert math.isclose(job["trainingMetrics"]["trainingLoss"], last["training_loss"], rel_tol=1e-3), (
            f"trainingMetrics.trainingLoss {job['trainingMetrics']['trainingLoss']} is not step 39's loss "
            f"{last['training_loss']}")
        model = control.get_custom_model(modelIdentifier=created.model_name)
        assert (model["modelStatus"], model["jobArn"]) == ("Active", created.arn), (
            f"no Active custom model from the resumed job: {model}")
        # Resumed from a checkpoint, not retrained from step 0: the server says where it
        # resumed (training is deterministic, so the losses alone could not tell).
        log = re.sub(r"\x1b\[[0-9;]*m", "", srv.log_path.read_text(errors="replace"))
        resumed = re.findall(r'resumed from its checkpoint job="' + created.job_id + r'" step=(\d+)', log)
        assert resumed, f"the restarted server did not resume job {created.job_id} from a checkpoint"
        step = int(resumed[-1])
        assert 5 <= step <= done_before, (
            f"the job resumed at step {step}; the kill came after {done_before} steps and the server "
            f"checkpoints every 5")
    finally:
        stop_server(srv)


# --------------------------------------------------------------------------
# Custom-model deployments: on-demand use of a custom model
# --------------------------------------------------------------------------


def test_a_deployment_serves_the_custom_model_on_demand(control, runtime, learned):
    model_arn = learned["model"]["modelArn"]
    name = fresh("dep")
    resp = control.create_custom_model_deployment(modelDeploymentName=name, modelArn=model_arn,
                                                  description="on demand")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 202, f"CreateCustomModelDeployment answered {resp['ResponseMetadata']}"
    arn = resp["customModelDeploymentArn"]
    assert re.fullmatch(r"arn:aws:bedrock:us-east-1:\d{12}:custom-model-deployment/[a-z0-9]{12}", arn), (
        f"malformed customModelDeploymentArn {arn!r}")
    try:
        got = control.get_custom_model_deployment(customModelDeploymentIdentifier=arn)
        assert (got["modelDeploymentName"], got["modelArn"], got["status"], got["description"]) == (
            name, model_arn, "Active", "on demand"), f"GetCustomModelDeployment fields wrong: {got}"
        assert control.get_custom_model_deployment(customModelDeploymentIdentifier=name)["customModelDeploymentArn"] == arn, (
            "a deployment is not found by its name")
        listed = control.list_custom_model_deployments(nameContains=name)["modelDeploymentSummaries"]
        assert [(d["customModelDeploymentArn"], d["customModelDeploymentName"], d["modelArn"], d["status"])
                for d in listed] == [(arn, name, model_arn, "Active")], f"ListCustomModelDeployments: {listed}"
        assert control.list_custom_model_deployments(modelArnEquals=model_arn, statusEquals="Failed")[
            "modelDeploymentSummaries"] == [], "statusEquals=Failed lists an active deployment"
        # On demand through the deployment's ARN: the fine-tuned behaviour, metered as on-demand.
        answers = {n: ask(runtime, arn, n) for n in HELD_OUT}
        right = [n for n, a in answers.items() if a == TARGET]
        assert len(right) >= 3, f"through the deployment the model answers {TARGET!r} only for {right}: {answers}"
        # The deployment holds its model: deleting the model is refused.
        expect_one_of(lambda: control.delete_custom_model(modelIdentifier=model_arn),
                      {("ValidationException", 400)} | CONFLICT)
        expect_one_of(lambda: control.create_custom_model_deployment(modelDeploymentName=name, modelArn=model_arn),
                      CONFLICT)
        expect_client_error(lambda: control.create_custom_model_deployment(
            modelDeploymentName=fresh("dep"), modelArn=model_arn.rsplit("/", 1)[0] + "/zzzzzzzzzzzz"),
            "ResourceNotFoundException", 404)
    finally:
        control.delete_custom_model_deployment(customModelDeploymentIdentifier=arn)
    expect_client_error(lambda: control.get_custom_model_deployment(customModelDeploymentIdentifier=arn),
                        "ResourceNotFoundException", 404)
    expect_client_error(lambda: runtime.converse(modelId=arn, messages=[user_msg("Hi")]),
                        "ResourceNotFoundException", 404)


# --------------------------------------------------------------------------
# Last: deleting the shared custom model (the tests above use it)
# --------------------------------------------------------------------------


def test_a_custom_model_in_use_is_not_deleted_then_is(control, runtime, learned):
    arn = learned["model"]["modelArn"]
    name = learned["created"].model_name
    with provisioned(control, model=arn):
        expect_one_of(lambda: control.delete_custom_model(modelIdentifier=arn),
                      {("ValidationException", 400)} | CONFLICT)
        assert control.get_custom_model(modelIdentifier=arn)["modelArn"] == arn, (
            "a refused DeleteCustomModel removed the model anyway")
    resp = control.delete_custom_model(modelIdentifier=arn)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200, f"DeleteCustomModel answered HTTP {resp['ResponseMetadata']}"
    assert {k: v for k, v in resp.items() if k != "ResponseMetadata"} == {}, f"DeleteCustomModel answered {resp}"
    expect_client_error(lambda: control.get_custom_model(modelIdentifier=arn), "ResourceNotFoundException", 404)
    no_custom_model(control, name, "the model was deleted")
    expect_client_error(lambda: control.delete_custom_model(modelIdentifier=arn), "ResourceNotFoundException", 404)
    # Every provisioned throughput bought on the custom model gave its capacity back:
    # the base model's whole capacity can be bought again (4 slots, 1 kept on demand).
    with provisioned(control, model=CHAT_MODEL, units=3):
        pass
