"""Model import through boto3: CreateModelImportJob / Get / List, GetImportedModel /
ListImportedModels / DeleteImportedModel, and invoking an imported model on demand.

- A GGUF file imported as it is: a cold model first answers ModelNotReadyException
  (429) while its engine loads, then answers exactly as the catalog model made from
  the same file (greedy).
- Import round trip: an adapter trained by a customization job is written out as a
  Hugging Face PEFT adapter (adapter_config.json + adapter_model.safetensors, q and k
  rows in Hugging Face order, by the pure-Python fixture below) and imported onto its
  base: the imported model's greedy answers equal the custom model's.
- A Hugging Face model folder (config.json, tokenizer.json, safetensors) converted to
  GGUF and quantized by llama.cpp's quantizer: the served SmolLM2 written as such a
  folder (by the numpy fixture below) comes back byte for byte and answers the same; a
  BF16 sharded copy imports and answers; tiny random Qwen2 and Mistral (SentencePiece
  tokenizer.model) models import and serve.
- Refusals: an empty folder, Hugging Face folders that cannot be converted (each with
  its reason), DoRA, a source outside the allowed directories, missing fields, a
  duplicate name."""
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


def converse_when_ready(runtime, model_id: str, text: str, max_tokens: int = 24, timeout: float = 60) -> dict:
    """A greedy Converse; a cold imported model answers ModelNotReadyException until loaded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return runtime.converse(modelId=model_id, messages=[user_msg(text)],
                                    inferenceConfig={"temperature": 0, "maxTokens": max_tokens})
        except Exception as e:  # botocore ClientError
            code = getattr(e, "response", {}).get("Error", {}).get("Code")
            assert code == "ModelNotReadyException", f"converse on {model_id} failed: {e}"
            assert time.monotonic() < deadline, f"{model_id} still not ready after {timeout}s"
            time.sleep(0.3)


def answer(runtime, model_id: str, text: str, timeout: float = 60) -> str:
    """The greedy answer's text."""
    return converse_text(converse_when_ready(runtime, model_id, text, timeout=timeout)).strip()


# --------------------------------------------------------------------------
# GGUF reading and PEFT writing (the fixture: no numpy, no torch)
# --------------------------------------------------------------------------

# ggml type → (elements per block, bytes per block), for sizing tensors.
GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
               10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}


def read_gguf(path: Path) -> tuple[dict, dict]:
    """(metadata, tensors) of a GGUF file whose tensors are f32: name → (ggml dims, bytes)."""
    meta, tensors = read_gguf_raw(path)
    for name, (_, kind, _) in tensors.items():
        assert kind == 0, f"tensor {name} is not f32"
    return meta, {name: (dims, raw) for name, (dims, _, raw) in tensors.items()}


def read_gguf_raw(path: Path) -> tuple[dict, dict]:
    """(metadata, tensors) of a GGUF file: name → (ggml dims, ggml type, bytes)."""
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
        assert kind in GGML_BLOCKS, f"tensor {name} has ggml type {kind}, which this reader does not size"
        infos.append((name, dims, kind, offset))
    alignment = meta.get("general.alignment", 32)
    start = (pos + alignment - 1) // alignment * alignment
    tensors = {}
    for name, dims, kind, offset in infos:
        count = 1
        for d in dims:
            count *= d
        per_block, block_bytes = GGML_BLOCKS[kind]
        size = count // per_block * block_bytes
        tensors[name] = (dims, kind, data[start + offset:start + offset + size])
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


def dequantize(kind: int, raw: bytes, count: int):
    """ggml blocks → float32 values, as ggml's own dequantization computes them."""
    import numpy as np
    if kind == 0:
        return np.frombuffer(raw, dtype="<f4").copy()
    if kind == 1:
        return np.frombuffer(raw, dtype="<f2").astype(np.float32)
    if kind == 8:  # Q8_0: d (f16), 32 × int8
        blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("q", "i1", 32)]))
        return (blocks["q"].astype(np.float32) * blocks["d"].astype(np.float32)[:, None]).reshape(count)
    if kind == 3:  # Q4_1: d, m (f16), 16 bytes of nibbles: low → elements 0..15, high → 16..31
        blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("m", "<f2"), ("q", "u1", 16)]))
        q = np.concatenate([blocks["q"] & 0x0F, blocks["q"] >> 4], axis=1).astype(np.float32)
        return (q * blocks["d"].astype(np.float32)[:, None] + blocks["m"].astype(np.float32)[:, None]).reshape(count)
    raise AssertionError(f"the fixture does not dequantize ggml type {kind}")


HF_LAYER_NAMES = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                  **PEFT_NAMES}


def write_hf_model(gguf: Path, out: Path, dtype: str = "F32", shards: int = 1) -> dict:
    """The served GGUF model as a Hugging Face folder: config.json, tokenizer.json,
    tokenizer_config.json and the weights dequantized to `dtype` (F32 or BF16) in
    `shards` safetensors files, q/k rows back in Hugging Face order. Returns the GGUF's
    metadata."""
    import numpy as np
    meta, tensors = read_gguf_raw(gguf)
    assert meta["general.architecture"] == "llama", f"{gguf} is not a llama model"
    heads, kv_heads = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
    weights = {}
    for name, (dims, kind, raw) in tensors.items():
        count = 1
        for d in dims:
            count *= d
        values = dequantize(kind, raw, count).reshape(list(reversed(dims)))
        parts = name.split(".")
        if name == "token_embd.weight":
            hf = "model.embed_tokens.weight"
        elif name == "output_norm.weight":
            hf = "model.norm.weight"
        elif name == "output.weight":
            hf = "lm_head.weight"
        else:
            assert parts[0] == "blk" and parts[3] == "weight", f"unexpected tensor {name}"
            hf = f"model.layers.{parts[1]}.{HF_LAYER_NAMES[parts[2]]}.weight"
            if parts[2] in ("attn_q", "attn_k"):
                n = heads if parts[2] == "attn_q" else kv_heads
                rows, cols = values.shape
                values = values.reshape(n, rows // n // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)
        weights[hf] = values
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(weights)
    for shard in range(shards):
        header, blobs, offset = {}, [], 0
        for name in names[shard::shards]:
            values = weights[name]
            if dtype == "BF16":  # round to nearest even, as torch does
                bits = values.astype(np.float32).view(np.uint32)
                raw = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").tobytes()
            else:
                raw = values.astype("<f4").tobytes()
            header[name] = {"dtype": dtype, "shape": list(values.shape), "data_offsets": [offset, offset + len(raw)]}
            blobs.append(raw)
            offset += len(raw)
        header["__metadata__"] = {"format": "pt"}
        head = json.dumps(header).encode()
        head += b" " * (-len(head) % 8)
        file = "model.safetensors" if shards == 1 else f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        (out / file).write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))

    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "smollm", (
        "the fixture writes SmolLM's tokenizer.json only")
    special = lambda key: tokens[meta[key]] if key in meta else None  # noqa: E731
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(tokens) if types[i] == 3],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": {t: i for i, t in enumerate(tokens) if types[i] != 5},
                  "merges": meta["tokenizer.ggml.merges"]},
    }
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    tokenizer_config = {"tokenizer_class": "GPT2Tokenizer", "clean_up_tokenization_spaces": False,
                        "model_max_length": meta["llama.context_length"],
                        "chat_template": meta["tokenizer.chat_template"]}
    for kind, key in [("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"),
                      ("pad", "padding_token_id")]:
        if special(f"tokenizer.ggml.{key}") is not None:
            tokenizer_config[f"{kind}_token"] = special(f"tokenizer.ggml.{key}")
    for kind in ("bos", "eos"):
        if f"tokenizer.ggml.add_{kind}_token" in meta:
            tokenizer_config[f"add_{kind}_token"] = meta[f"tokenizer.ggml.add_{kind}_token"]
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": meta["llama.embedding_length"], "intermediate_size": meta["llama.feed_forward_length"],
              "num_hidden_layers": meta["llama.block_count"], "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "max_position_embeddings": meta["llama.context_length"],
              "rms_norm_eps": meta["llama.attention.layer_norm_rms_epsilon"],
              "rope_theta": meta["llama.rope.freq_base"], "rope_scaling": None, "vocab_size": len(tokens),
              "tie_word_embeddings": "output.weight" not in tensors, "hidden_act": "silu",
              "torch_dtype": "float32" if dtype == "F32" else "bfloat16"}
    (out / "config.json").write_text(json.dumps(config))
    return meta


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


def imported_gguf(server, model_arn: str) -> Path:
    path = server.data_dir / "customization" / "models" / model_arn.rsplit("/", 1)[-1] / "model.gguf"
    assert path.is_file(), f"the imported model has no GGUF file at {path}"
    return path


def test_a_hugging_face_folder_imports_as_the_model_it_was_made_from(control, runtime, batch_root, server):
    """The served SmolLM2 written as a Hugging Face folder (f32 safetensors, q/k rows in
    Hugging Face order, tokenizer.json) and imported with the server's quantization
    (Q4_1, the served file's own): llama.cpp's quantizer gives back every tensor byte
    for byte, the tokenizer and chat template are the same, so the answers are too."""
    source = workdir(batch_root)
    original_meta = write_hf_model(GGUF, source)
    arn, name = create_import(control, source)
    job = wait_import(control, arn, timeout=300)
    assert job["status"] == "Completed", f"the Hugging Face import ended {job['status']}: {job.get('failureMessage')!r}"
    model_arn = job["importedModelArn"]
    model = control.get_imported_model(modelIdentifier=model_arn)
    assert (model["modelArchitecture"], model["instructSupported"]) == ("llama", True), f"GetImportedModel: {model}"

    meta, tensors = read_gguf_raw(imported_gguf(server, model_arn))
    _, original = read_gguf_raw(GGUF)
    for key, value in original_meta.items():
        if key.startswith(("llama.", "tokenizer.")):
            assert meta.get(key) == value, f"the imported GGUF's {key} is {str(meta.get(key))[:200]!r}, the served one's {str(value)[:200]!r}"
    assert sorted(tensors) == sorted(original), f"tensor names differ: {sorted(set(tensors) ^ set(original))[:10]}"
    different = [n for n in original if tensors[n][:2] != original[n][:2] or tensors[n][2] != original[n][2]]
    assert not different, (f"{len(different)} of {len(original)} tensors differ from the served file's, e.g. "
                           f"{different[:3]} (types {[(tensors[n][1], original[n][1]) for n in different[:3]]})")

    for text in ["What is the capital of France?", question("India")]:
        mine = answer(runtime, model_arn, text)
        base = answer(runtime, CHAT_MODEL, text)
        assert mine == base, f"the imported folder answers {mine!r}, the catalog model {base!r} for {text!r}"
    control.delete_imported_model(modelIdentifier=model_arn)


def test_a_bf16_sharded_folder_imports_and_answers(control, runtime, batch_root, server):
    """Weights in BF16 across three shards: converted, quantized and served (bf16 rounding
    changes the weights slightly, so only the shape of the result is compared)."""
    source = workdir(batch_root)
    write_hf_model(GGUF, source, dtype="BF16", shards=3)
    arn, _ = create_import(control, source)
    job = wait_import(control, arn, timeout=300)
    assert job["status"] == "Completed", f"the BF16 import ended {job['status']}: {job.get('failureMessage')!r}"
    model_arn = job["importedModelArn"]
    _, tensors = read_gguf_raw(imported_gguf(server, model_arn))
    _, original = read_gguf_raw(GGUF)
    assert {n: t[:2] for n, t in tensors.items()} == {n: t[:2] for n, t in original.items()}, (
        "the BF16 import's tensors have other shapes or types than the served file's")
    reply = answer(runtime, model_arn, "What is the capital of France?")
    assert "Paris" in reply, f"the BF16 import answers {reply!r}"
    control.delete_imported_model(modelIdentifier=model_arn)


# A tiny model in Hugging Face layout, made here, for the Qwen2 path and for refusals.
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_tiny_hf(out: Path, arch: str = "Qwen2ForCausalLM", config_changes: dict | None = None,
                  tensor_changes=None, tokenizer_changes=None) -> None:
    """A randomly initialised model (hidden 32, 2 layers, byte-level vocabulary of 300)."""
    import numpy as np
    rng = np.random.default_rng(7)
    hidden, layers, heads, kv_heads, ffn, vocab_size = 32, 2, 2, 1, 64, 300
    head_dim = hidden // heads
    config = {"architectures": [arch], "hidden_size": hidden, "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads, "intermediate_size": ffn,
              "vocab_size": vocab_size, "max_position_embeddings": 512, "rms_norm_eps": 1e-6,
              "rope_theta": 10000.0, "tie_word_embeddings": False}
    config.update(config_changes or {})
    shapes = {"model.embed_tokens.weight": [vocab_size, hidden], "model.norm.weight": [hidden],
              "lm_head.weight": [vocab_size, hidden]}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": [hidden], p + "post_attention_layernorm.weight": [hidden],
                       p + "self_attn.q_proj.weight": [heads * head_dim, hidden],
                       p + "self_attn.k_proj.weight": [kv_heads * head_dim, hidden],
                       p + "self_attn.v_proj.weight": [kv_heads * head_dim, hidden],
                       p + "self_attn.o_proj.weight": [hidden, heads * head_dim],
                       p + "mlp.gate_proj.weight": [ffn, hidden], p + "mlp.up_proj.weight": [ffn, hidden],
                       p + "mlp.down_proj.weight": [hidden, ffn]})
        if arch.startswith("Qwen2"):
            shapes.update({p + "self_attn.q_proj.bias": [heads * head_dim],
                           p + "self_attn.k_proj.bias": [kv_heads * head_dim],
                           p + "self_attn.v_proj.bias": [kv_heads * head_dim]})
    tensors = {}
    for name, shape in shapes.items():
        values = np.ones(shape, np.float32) if name.endswith("norm.weight") else rng.normal(0, 0.2, shape).astype(np.float32)
        tensors[name] = ("F32", values.tobytes(), shape)
    if tensor_changes:
        tensor_changes(tensors)
    header, blobs, offset = {}, [], 0
    for name, (dtype, raw, shape) in sorted(tensors.items()):
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    merges = [["Ġ", "t"], ["h", "e"], ["Ġt", "he"]]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    added = [{"id": len(vocab) + k, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for k, t in enumerate(specials)]
    tokenizer = {"version": "1.0", "added_tokens": added, "normalizer": None,
                 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                     {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
                     {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
                 "decoder": {"type": "ByteLevel"},
                 "model": {"type": "BPE", "byte_fallback": False, "vocab": vocab, "merges": merges}}
    if tokenizer_changes:
        tokenizer_changes(tokenizer)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None, "chat_template": CHATML}))
    (out / "config.json").write_text(json.dumps(config))


def test_a_qwen2_folder_imports_and_serves(control, runtime, batch_root, server):
    """A (random, tiny) Qwen2 model: biases on q/k/v, no rotary permutation, the Qwen2
    pre-tokenizer; it is converted, quantized and answers Converse through its template."""
    source = workdir(batch_root)
    write_tiny_hf(source)
    arn, _ = create_import(control, source)
    job = wait_import(control, arn)
    assert job["status"] == "Completed", f"the Qwen2 import ended {job['status']}: {job.get('failureMessage')!r}"
    model_arn = job["importedModelArn"]
    model = control.get_imported_model(modelIdentifier=model_arn)
    assert (model["modelArchitecture"], model["instructSupported"]) == ("qwen2", True), f"GetImportedModel: {model}"
    meta, tensors = read_gguf_raw(imported_gguf(server, model_arn))
    assert (meta["general.architecture"], meta["tokenizer.ggml.pre"], meta["qwen2.block_count"]) == ("qwen2", "qwen2", 2)
    assert "blk.1.attn_q.bias" in tensors and tensors["blk.1.attn_q.bias"][1] == 0, "the q bias is missing or not f32"
    resp = converse_when_ready(runtime, model_arn, "the", max_tokens=8)
    assert resp["usage"]["outputTokens"] >= 1 and resp["stopReason"] in ("max_tokens", "end_turn"), f"{resp}"
    control.delete_imported_model(modelIdentifier=model_arn)


def sentencepiece_model(pieces: list[tuple[str, float, int]], model_type: int = 2) -> bytes:
    """A SentencePiece ModelProto (protobuf) of (piece, score, type) — BPE by default."""
    def varint(v: int) -> bytes:
        out = bytearray()
        while True:
            byte, v = v & 0x7F, v >> 7
            out.append(byte | (0x80 if v else 0))
            if not v:
                return bytes(out)

    def field(number: int, body: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(body)) + body

    out = b"".join(field(1, field(1, text.encode()) + varint(2 << 3 | 5) + struct.pack("<f", score)
                         + varint(3 << 3) + varint(kind)) for text, score, kind in pieces)
    out += field(2, varint(3 << 3) + varint(model_type))          # trainer_spec.model_type
    out += field(3, field(1, b"identity") + varint(3 << 3) + varint(1))  # normalizer: add_dummy_prefix
    return out


def test_a_mistral_folder_with_a_sentencepiece_tokenizer_imports_and_serves(control, runtime, batch_root, server):
    """Mistral's layout with a SentencePiece tokenizer.model (no tokenizer.json): llama.cpp's
    `llama` tokenizer with each piece's score and type, byte pieces, BOS added."""
    source = workdir(batch_root)
    write_tiny_hf(source, arch="MistralForCausalLM", config_changes={"sliding_window": 4096})
    (source / "tokenizer.json").unlink()
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    pieces += [(p, -float(i), 1) for i, p in enumerate(["▁t", "he", "▁the", "▁", "t", "h", "e", "a"])]
    (source / "tokenizer.model").write_bytes(sentencepiece_model(pieces))
    (source / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
        "chat_template": "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"}))
    arn, _ = create_import(control, source)
    job = wait_import(control, arn)
    assert job["status"] == "Completed", f"the Mistral import ended {job['status']}: {job.get('failureMessage')!r}"
    model_arn = job["importedModelArn"]
    meta, _ = read_gguf_raw(imported_gguf(server, model_arn))
    assert (meta["general.architecture"], meta["tokenizer.ggml.model"]) == ("llama", "llama"), meta.get("tokenizer.ggml.model")
    assert meta["tokenizer.ggml.tokens"][:len(pieces)] == [p for p, _, _ in pieces], "the pieces changed"
    assert meta["tokenizer.ggml.scores"][len(pieces) - 1] == -7.0 and meta["tokenizer.ggml.token_type"][3] == 6
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"],
            meta["tokenizer.ggml.add_bos_token"]) == (1, 2, True)
    resp = converse_when_ready(runtime, model_arn, "the tea", max_tokens=8)
    # [INST] the tea [/INST] with BOS: the prompt is tokenized by the imported pieces.
    assert resp["usage"]["inputTokens"] >= 5 and resp["usage"]["outputTokens"] >= 1, f"{resp['usage']}"
    control.delete_imported_model(modelIdentifier=model_arn)


def _drop(name):
    return lambda t: t.pop(name)


def _set(name, **change):
    def apply(t):
        dtype, raw, shape = t[name]
        t[name] = (change.get("dtype", dtype), change.get("raw", raw), change.get("shape", shape))
    return apply


@pytest.mark.parametrize("case, kwargs, mentions", [
    ("llama-architecture-unknown", {"arch": "GPT2LMHeadModel"}, "GPT2LMHeadModel"),
    ("huge-layers", {"config_changes": {"num_hidden_layers": 100000}}, "num_hidden_layers"),
    ("odd-heads", {"config_changes": {"num_key_value_heads": 3}}, "not a multiple"),
    ("yarn", {"config_changes": {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}}, "yarn"),
    ("missing-tensor", {"tensor_changes": _drop("model.layers.1.mlp.down_proj.weight")}, "is missing"),
    ("extra-tensor", {"tensor_changes": lambda t: t.update({"model.layers.0.mlp.experts.weight": ("F32", b"\0" * 16, [4])})},
     "is not part of a qwen2 model"),
    ("wrong-shape", {"tensor_changes": _set("model.embed_tokens.weight", shape=[300, 31], raw=b"\0" * 300 * 31 * 4)},
     "config.json makes it"),
    ("int8", {"tensor_changes": _set("model.norm.weight", dtype="I8", raw=b"\0" * 32)}, "must be F32, F16 or BF16"),
    ("short-data", {"tensor_changes": _set("model.norm.weight", raw=b"\0" * 8)}, "do not fit"),
    ("spm-tokenizer-without-model", {"tokenizer_changes": lambda t: t["model"].update(byte_fallback=True)},
     "which the folder lacks"),
    ("unknown-pre-tokenizer", {"tokenizer_changes": lambda t: t.update(pre_tokenizer={"type": "Whitespace"})},
     "pre_tokenizer"),
    ("token-past-vocab", {"tokenizer_changes": lambda t: t["model"]["vocab"].update({"zz": 5000})},
     "past the model's vocab_size"),
])
def test_a_hugging_face_folder_that_cannot_be_converted_fails_with_the_reason(control, batch_root, case, kwargs,
                                                                             mentions):
    source = workdir(batch_root)
    write_tiny_hf(source, **kwargs)
    arn, name = create_import(control, source)
    job = wait_import(control, arn)
    assert job["status"] == "Failed", f"importing a {case} folder ended {job['status']}"
    assert mentions in job.get("failureMessage", ""), f"{case}: failureMessage {job.get('failureMessage')!r}"
    expect_client_error(lambda: control.get_imported_model(modelIdentifier=name), "ResourceNotFoundException", 404)


def test_a_folder_larger_than_the_import_limit_is_refused_before_it_is_read(control, batch_root):
    """A 3 GiB (sparse) file against the test server's 2 GiB max_import_bytes."""
    source = workdir(batch_root)
    with open(source / "model.gguf", "wb") as f:
        f.truncate(3 << 30)
    arn, name = create_import(control, source)
    job = wait_import(control, arn)
    assert job["status"] == "Failed" and "max_import_bytes" in job.get("failureMessage", ""), (
        f"a 3 GiB folder ended {job['status']}: {job.get('failureMessage')!r}")
    expect_client_error(lambda: control.get_imported_model(modelIdentifier=name), "ResourceNotFoundException", 404)


def test_a_hugging_face_folder_without_a_usable_tokenizer_or_weights_fails(control, batch_root):
    for missing, mentions in [("tokenizer.json", "tokenizer.json is missing"),
                              ("model.safetensors", "no *.safetensors file")]:
        source = workdir(batch_root)
        write_tiny_hf(source)
        (source / missing).unlink()
        arn, _ = create_import(control, source)
        job = wait_import(control, arn)
        assert job["status"] == "Failed" and mentions in job.get("failureMessage", ""), (
            f"a folder without {missing} ended {job['status']}: {job.get('failureMessage')!r}")
    for model, mentions in [(sentencepiece_model([("<unk>", 0.0, 2), ("a", -1.0, 1)], model_type=1), "Unigram"),
                            (b"\xff" * 40, "tokenizer.model: varint"),
                            (sentencepiece_model([("<unk>", 0.0, 2)] * 400), "more than the model's vocab_size")]:
        source = workdir(batch_root)
        write_tiny_hf(source)
        (source / "tokenizer.model").write_bytes(model)
        arn, _ = create_import(control, source)
        job = wait_import(control, arn)
        assert job["status"] == "Failed" and mentions in job.get("failureMessage", ""), (
            f"a folder with a bad tokenizer.model ({mentions}) ended {job['status']}: {job.get('failureMessage')!r}")


@pytest.mark.parametrize("case, files, mentions", [
    ("empty", {}, "no GGUF file"),
    ("hf-folder", {"config.json": "{}", "model.safetensors": ""}, "config.json: architecture"),
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
