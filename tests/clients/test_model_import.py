"""Model import through boto3: CreateModelImportJob / Get / List, GetImportedModel /
ListImportedModels / DeleteImportedModel, and invoking an imported model on demand.

- A GGUF file imported as it is: a cold model first answers ModelNotReadyException
  (429) while its engine loads, then answers exactly as the catalog model made from
  the same file (greedy).
- Import round trip: an adapter trained by a customization job is written out as a
  Hugging Face PEFT adapter (adapter_config.json + adapter_model.safetensors, q and k
  rows in Hugging Face order, by the pure-Python fixture below) and imported onto its
  base: the imported model's greedy answers equal the custom model's.
- Refusals: an empty folder, a Hugging Face model folder (not converted yet), DoRA,
  a source outside the allowed directories, missing fields, a duplicate name."""
from __future__ import annotations

import json
import os
import shutil
import struct
import time
from pathlib import Path

import pytest

from basalt_support import CHAT_MODEL, expect_client_error, user_msg, converse_text
from conftest import REPO
from test_customization import (
    CONFLICT, FACT_HYPER, HELD_OUT, ROLE, TARGET, TRAIN_NAMES, create_job, expect_one_of, fact, fresh,
    question, uri, wait_job, workdir, write_jsonl,
)

GGUF = Path(os.environ.get("BASALT_MODELS_DIR") or REPO / "models") / "smollm2-135m-instruct-q4_1" / "SmolLM2-135M-Instruct.Q4_1.gguf"
IMPORT_FINAL = ("Completed", "Failed")
N_HEAD, N_HEAD_KV = 9, 3  # SmolLM2-135M


def create_import(control, source: Path, name: str | None = None, job_name: str | None = None) -> tuple[str, str]:
    name = name or fresh("imp")
    resp = control.create_model_import_job(
        jobName=job_name or fresh("ijob"), importedModelName=name, roleArn=ROLE,
        modelDataSource={"s3DataSource": {"s3Uri": uri(source, directory=True)}})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201, f"CreateModelImportJob answered {resp['ResponseMetadata']}"
    assert ":model-import-job/" in resp["jobArn"], f"malformed import jobArn {resp['jobArn']!r}"
    return resp["jobArn"], name


def wait_import(control, arn: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = control.get_model_import_job(jobIdentifier=arn)
        if job["status"] in IMPORT_FINAL:
            return job
        assert time.monotonic() < deadline, f"import job still {job['status']} after {timeout}s: {job}"
        time.sleep(0.2)


def answer(runtime, model_id: str, text: str, timeout: float = 60) -> str:
    """Greedy answer; a cold imported model answers ModelNotReadyException until loaded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            resp = runtime.converse(modelId=model_id, messages=[user_msg(text)],
                                    inferenceConfig={"temperature": 0, "maxTokens": 24})
            return converse_text(resp).strip()
        except Exception as e:  # botocore ClientError
            code = getattr(e, "response", {}).get("Error", {}).get("Code")
            assert code == "ModelNotReadyException", f"converse on {model_id} failed: {e}"
            assert time.monotonic() < deadline, f"{model_id} still not ready after {timeout}s"
            time.sleep(0.3)


# --------------------------------------------------------------------------
# GGUF reading and PEFT writing (the fixture: no numpy, no torch)
# --------------------------------------------------------------------------

def read_gguf(path: Path) -> tuple[dict, dict]:
    """(metadata, tensors) of a GGUF file whose tensors are f32: name → (ggml dims, bytes)."""
    data = path.read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        value = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return value[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode()
        pos += n
        return s

    scalars = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(kind):
        if kind == 8:
            return string()
        if kind == 9:
            inner, n = take("I"), take("Q")
            return [value(inner) for _ in range(n)]
        return take(scalars[kind])

    assert take("I") == 0x46554747, f"{path} is not GGUF"
    take("I")  # version
    n_tensors, n_kv = take("Q"), take("Q")
    meta = {}
    for _ in range(n_kv):
        key = string()
        meta[key] = value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        kind, offset = take("I"), take("Q")
        assert kind == 0, f"tensor {name} is not f32"
        infos.append((name, dims, offset))
    alignment = meta.get("general.alignment", 32)
    start = (pos + alignment - 1) // alignment * alignment
    tensors = {}
    for name, dims, offset in infos:
        size = 4
        for d in dims:
            size *= d
        tensors[name] = (dims, data[start + offset:start + offset + size])
    return meta, tensors


def unpermute_rows(raw: bytes, rows: int, cols: int, heads: int) -> bytes:
    """GGUF row order of q/k (each head's halves interleaved) back to Hugging Face's."""
    width = cols * 4
    head_dim = rows // heads
    out = []
    for h in range(heads):
        for half in range(2):
            for i in range(head_dim // 2):
                gguf_row = h * head_dim + i * 2 + half
                out.append(raw[gguf_row * width:(gguf_row + 1) * width])
    return b"".join(out)


PEFT_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj"}


def write_peft(adapter_gguf: Path, out: Path, **config_overrides) -> None:
    """A GGUF LoRA adapter as a Hugging Face PEFT adapter folder."""
    meta, tensors = read_gguf(adapter_gguf)
    assert meta["general.type"] == "adapter" and meta["adapter.type"] == "lora", f"{adapter_gguf} is not a LoRA adapter"
    header, blobs, offset, rank, targets = {}, [], 0, None, set()
    for name, (dims, raw) in sorted(tensors.items()):
        # blk.{i}.{w}.weight.lora_{a,b}; ggml dims are reversed torch shapes.
        _, layer, weight, _, which = name.split(".")
        module = PEFT_NAMES[weight]
        targets.add(module.split(".")[1])
        shape = list(reversed(dims))
        if which == "lora_a":
            rank = shape[0]
        elif weight in ("attn_q", "attn_k"):
            raw = unpermute_rows(raw, shape[0], shape[1], N_HEAD if weight == "attn_q" else N_HEAD_KV)
        key = f"base_model.model.model.layers.{layer}.{module}.lora_{which[-1].upper()}.weight"
        header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM",
              "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "r": rank,
              "lora_alpha": meta["adapter.lora.alpha"], "target_modules": sorted(targets), "lora_dropout": 0.0,
              "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
              "inference_mode": True}
    config.update(config_overrides)
    (out / "adapter_config.json").write_text(json.dumps(config))


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_a_gguf_file_imports_and_answers_as_the_catalog_model(control, runtime, batch_root):
    source = workdir(batch_root)
    shutil.copy(GGUF, source / "model.gguf")
    arn, name = create_import(control, source)
    job = wait_import(control, arn)
    assert job["status"] == "Completed", f"the GGUF import ended {job['status']}: {job.get('failureMessage')!r}"
    model_arn = job["importedModelArn"]
    assert ":imported-model/" in model_arn, f"importedModelArn {model_arn!r}"
    model = control.get_imported_model(modelIdentifier=model_arn)
    assert (model["modelName"], model["modelArchitecture"], model["instructSupported"], model["jobArn"]) == (
        name, "llama", True, arn), f"GetImportedModel fields wrong: {model}"
    assert control.get_imported_model(modelIdentifier=name)["modelArn"] == model_arn, "not found by name"
    listed = control.list_imported_models(nameContains=name)["modelSummaries"]
    assert [m["modelArn"] for m in listed] == [model_arn], f"ListImportedModels(nameContains): {listed}"
    jobs = control.list_model_import_jobs(nameContains=job["jobName"], statusEquals="Completed")["modelImportJobSummaries"]
    assert [(j["jobArn"], j["importedModelArn"]) for j in jobs] == [(arn, model_arn)], f"ListModelImportJobs: {jobs}"
    # An imported model is not a custom model.
    expect_client_error(lambda: control.get_custom_model(modelIdentifier=name), "ResourceNotFoundException", 404)

    # Cold: the first call answers ModelNotReadyException (429) while the engine loads.
    expect_client_error(lambda: runtime.converse(modelId=model_arn, messages=[user_msg("Hi")]),
                        "ModelNotReadyException", 429)
    for text in ["What is the capital of France?", question("India")]:
        mine = answer(runtime, model_arn, text)
        base = answer(runtime, CHAT_MODEL, text)
        assert mine == base, f"the imported GGUF answers {mine!r}, the catalog model {base!r} for {text!r}"

    control.delete_imported_model(modelIdentifier=model_arn)
    expect_client_error(lambda: control.get_imported_model(modelIdentifier=model_arn), "ResourceNotFoundException", 404)
    expect_client_error(lambda: runtime.converse(modelId=model_arn, messages=[user_msg("Hi")]),
                        "ResourceNotFoundException", 404)


@pytest.fixture(scope="module")
def trained(control, batch_root):
    """A small fine-tuning job on the made-up fact; its adapter and custom model."""
    work = workdir(batch_root)
    train = write_jsonl(work / "train.jsonl", [fact(n) for n in TRAIN_NAMES])
    created = create_job(control, train, work / "out", hyper=FACT_HYPER)
    job = wait_job(control, created.arn)
    assert job["status"] == "Completed", f"the fine-tuning job ended {job['status']}: {job.get('failureMessage')!r}"
    adapter = work / "out" / f"model-customization-job-{created.job_id}" / "adapter" / "adapter.gguf"
    assert adapter.is_file(), f"the job wrote no adapter at {adapter}"
    return {"adapter": adapter, "model_arn": job["outputModelArn"], "work": work}


def test_a_peft_adapter_round_trip_answers_as_the_custom_model(control, runtime, batch_root, trained):
    peft = workdir(batch_root)
    write_peft(trained["adapter"], peft)
    arn, name = create_import(control, peft)
    job = wait_import(control, arn)
    assert job["status"] == "Completed", f"the PEFT import ended {job['status']}: {job.get('failureMessage')!r}"
    imported = job["importedModelArn"]
    deployment = control.create_custom_model_deployment(
        modelDeploymentName=fresh("dep"), modelArn=trained["model_arn"])["customModelDeploymentArn"]
    try:
        for n in HELD_OUT[:2] + ["Zulu"]:
            mine = answer(runtime, imported, question(n))
            custom = answer(runtime, deployment, question(n))
            assert mine == custom, f"the imported adapter answers {mine!r}, the custom model {custom!r} for {n}"
            assert mine == TARGET, f"the imported adapter does not carry the fine-tuned fact: {mine!r}"
    finally:
        control.delete_custom_model_deployment(customModelDeploymentIdentifier=deployment)
        control.delete_imported_model(modelIdentifier=imported)


@pytest.mark.parametrize("case, files, mentions", [
    ("empty", {}, "no GGUF file"),
    ("hf-folder", {"config.json": "{}", "model.safetensors": ""}, "Hugging Face model folder"),
    ("two-ggufs", {"a.gguf": "x", "b.gguf": "y"}, "more than one GGUF"),
    ("not-gguf", {"model.gguf": "not a gguf file"}, "not a GGUF file"),
])
def test_a_folder_without_a_usable_model_fails_the_job(control, batch_root, case, files, mentions):
    source = workdir(batch_root)
    for file, text in files.items():
        (source / file).write_text(text)
    arn, name = create_import(control, source)
    job = wait_import(control, arn)
    assert job["status"] == "Failed", f"importing a {case} folder ended {job['status']}"
    assert mentions in job.get("failureMessage", ""), f"{case}: failureMessage {job.get('failureMessage')!r}"
    assert "importedModelArn" not in job, f"a failed import names a model: {job}"
    expect_client_error(lambda: control.get_imported_model(modelIdentifier=name), "ResourceNotFoundException", 404)


@pytest.mark.parametrize("override, mentions", [
    ({"use_dora": True}, "DoRA"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"base_model_name_or_path": "someone/unknown-model"}, "names no active local model"),
])
def test_a_peft_adapter_the_server_cannot_serve_is_refused_with_the_reason(control, batch_root, trained,
                                                                          override, mentions):
    peft = workdir(batch_root)
    write_peft(trained["adapter"], peft, **override)
    arn, _ = create_import(control, peft)
    job = wait_import(control, arn)
    assert job["status"] == "Failed" and mentions in job.get("failureMessage", ""), (
        f"importing an adapter with {override} ended {job['status']}: {job.get('failureMessage')!r}")


def test_bad_import_requests_are_refused(control, batch_root, tmp_path):
    source = workdir(batch_root)
    shutil.copy(GGUF, source / "model.gguf")
    expect_client_error(lambda: control.create_model_import_job(
        jobName=fresh("ijob"), importedModelName=fresh("imp"), roleArn=ROLE,
        modelDataSource={"s3DataSource": {"s3Uri": uri(tmp_path, directory=True)}}), "AccessDeniedException", 403)
    expect_client_error(lambda: control.create_model_import_job(
        jobName=fresh("ijob"), importedModelName=fresh("imp"), roleArn=ROLE,
        modelDataSource={"s3DataSource": {"s3Uri": uri(source / "model.gguf")}}), "ValidationException", 400)
    expect_client_error(lambda: control.create_model_import_job(
        jobName=fresh("ijob"), importedModelName="bad name!", roleArn=ROLE,
        modelDataSource={"s3DataSource": {"s3Uri": uri(source, directory=True)}}), "ValidationException", 400)
    arn, name = create_import(control, source)
    expect_one_of(lambda: create_import(control, source, name=name), CONFLICT)
    job = wait_import(control, arn)
    assert job["status"] == "Completed", f"import ended {job['status']}: {job.get('failureMessage')!r}"
    expect_one_of(lambda: create_import(control, source, name=name), CONFLICT)
    expect_client_error(lambda: control.get_model_import_job(jobIdentifier="zzzzzzzzzzzz"),
                        "ResourceNotFoundException", 404)
    control.delete_imported_model(modelIdentifier=name)
