"""Imported and custom models on a fleet: nodes that share one PostgreSQL store and,
for models' files, one S3 location (`[customization] artifacts`, on moto's S3 server).

- A model imported on node 0 is served by node 1: node 1 first answers
  ModelNotReadyException while it copies the model's file from S3 (checked against
  the SHA-256 on the record: an altered object is refused, with the reason), then
  answers exactly as node 0 does (greedy). The object is in S3 under
  `<prefix><model id>/`.
- Deleting the model on node 1 deletes the object; node 0 then answers that the model
  does not exist, and its files are gone.
(A node without `artifacts` answers 503 naming the setting for a model whose file it
does not have: a unit test in `basalt-core/src/model_artifacts.rs`, since nodes on one
machine see each other's files.)"""
from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from basalt_support import converse_text, user_msg
from conftest import BOTO_CONFIG, _tail, start_server, stop_server
from kb_support import start_postgres
from test_batch_s3 import BUCKET, s3, s3_server_config, s3_store  # noqa: F401 (fixtures)
from test_customization import ROLE, fresh, uri
from test_model_import import write_tiny_hf

REGION = "us-east-1"
PREFIX = "fleet-models/"


def node_config(base: Path, store_url: str, endpoint: str) -> Path:
    """The S3 tests' configuration (moto, credentials from the environment), with the
    shared store and the shared location for models' files."""
    text = s3_server_config(base, endpoint).read_text()
    shared = f'artifacts = "s3://{BUCKET}/{PREFIX}"\n'
    assert "[customization]\n" in text, "the test configuration has no [customization] table"
    text = text.replace("[customization]\n", "[customization]\n" + shared, 1)
    text += f'\n[store]\nurl = "{store_url}"\n'
    path = base / "node.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, s3_store):  # noqa: F811
    base = tmp_path_factory.mktemp("fleet-models")
    root = base / "root"
    root.mkdir()
    pg, store_url = start_postgres(base / "pg")
    endpoint, key_id, secret = s3_store
    env = {"BASALT_ALLOWED_PATHS": str(root), "BASALT_TEST_S3_KEY_ID": key_id,
           "BASALT_TEST_S3_SECRET": secret}
    shared = node_config(base, store_url, endpoint)
    # The CLI (`basalt keys`) reads the same configuration: keys go to the shared store.
    env["BASALT_CONFIG"] = str(shared)
    nodes = []
    try:
        for i, config in enumerate((shared, shared)):
            node_base = base / f"node{i}"
            (node_base / "data").mkdir(parents=True)
            if nodes:
                # One master key for the fleet: SigV4 secrets derive from it.
                (node_base / "data" / "master.key").write_bytes((nodes[0].data_dir / "master.key").read_bytes())
            nodes.append(start_server(config, node_base, env))
        yield nodes, root
    finally:
        crashed = [(i, stop_server(n)) for i, n in enumerate(nodes)]
        pg.cleanup()
    bad = [(i, code) for i, code in crashed if code is not None]
    assert not bad, f"nodes exited while the tests ran: {bad}\n" + "\n".join(_tail(nodes[i].log_path) for i, _ in bad)


def client(service: str, node, key: dict):
    return boto3.session.Session().client(
        service, endpoint_url=node.url, region_name=REGION, aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG)


def converse(node, key: dict, model: str):
    return client("bedrock-runtime", node, key).converse(
        modelId=model, messages=[user_msg("the")], inferenceConfig={"temperature": 0, "maxTokens": 8})


def error_of(call) -> tuple[str | None, int | None]:
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, None


def when_ready(node, key: dict, model: str, timeout: float = 90) -> tuple[dict, int]:
    """The greedy answer once the model is ready, and how many ModelNotReady came first."""
    deadline = time.monotonic() + timeout
    not_ready = 0
    while True:
        try:
            return converse(node, key, model), not_ready
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ModelNotReadyException", f"converse on {model}: {e}"
            not_ready += 1
            assert time.monotonic() < deadline, f"{model} still not ready after {timeout}s: {e}"
            time.sleep(0.3)


def test_a_model_imported_on_one_node_is_served_by_another(fleet, s3):  # noqa: F811
    nodes, root = fleet
    key = nodes[0].cli_json("keys", "create", "--name", "fleet-models", "--json")
    source = root / fresh("tiny")
    write_tiny_hf(source)
    made = client("bedrock", nodes[0], key).create_model_import_job(
        jobName=fresh("ijob"), importedModelName=fresh("imp"), roleArn=ROLE,
        modelDataSource={"s3DataSource": {"s3Uri": uri(source, directory=True)}})
    control = client("bedrock", nodes[1], key)
    deadline = time.monotonic() + 180
    while (job := control.get_model_import_job(jobIdentifier=made["jobArn"]))["status"] not in ("Completed", "Failed"):
        assert time.monotonic() < deadline, f"the import is still {job['status']}"
        time.sleep(0.3)
    assert job["status"] == "Completed", f"the import ended {job['status']}: {job.get('failureMessage')!r}"
    model = job["importedModelArn"]
    model_id = model.rsplit("/", 1)[1]

    # The node that made it shared the file before the model existed.
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}{model_id}/").get("Contents", [])
    assert [o["Key"] for o in listed] == [f"{PREFIX}{model_id}/model.gguf"], f"shared objects: {listed}"

    here, _ = when_ready(nodes[0], key, model)
    # A shared file that is not the model's (its SHA-256 differs from the record's) is
    # refused: node 1 keeps answering ModelNotReady, with the reason once, and serves
    # nothing from it; with the right file back, the next request copies it again.
    shared_key = f"{PREFIX}{model_id}/model.gguf"
    original = s3.get_object(Bucket=BUCKET, Key=shared_key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=shared_key, Body=original[:-1] + bytes([original[-1] ^ 1]))
    deadline = time.monotonic() + 60
    while True:
        try:
            converse(nodes[1], key, model)
            pytest.fail("node 1 served a model from a file whose SHA-256 is not the model's")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ModelNotReadyException", f"{e}"
            if "SHA-256" in e.response["Error"]["Message"]:
                break
        assert time.monotonic() < deadline, "node 1 never reported the bad copy"
        time.sleep(0.2)
    assert not (nodes[1].data_dir / "customization" / "models" / model_id / "model.gguf").exists()
    s3.put_object(Bucket=BUCKET, Key=shared_key, Body=original)
    there, not_ready = when_ready(nodes[1], key, model)
    assert not_ready >= 1, "node 1 answered at once: it did not copy the file (or already had it)"
    assert converse_text(there) == converse_text(here), (
        f"node 1 answers {converse_text(there)!r}, node 0 {converse_text(here)!r}")
    copy = nodes[1].data_dir / "customization" / "models" / model_id / "model.gguf"
    assert copy.is_file(), f"node 1's copy is not at {copy}: {sorted(p.name for p in copy.parent.parent.glob('*'))}"

    # Deleted on node 1: the shared object goes, and node 0 no longer serves it.
    control.delete_imported_model(modelIdentifier=model)
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}{model_id}/").get("KeyCount") == 0
    assert not copy.exists(), "node 1 kept its copy of a model it deleted"
    code, status = error_of(lambda: converse(nodes[0], key, model))
    assert status in (400, 404) and code in ("ResourceNotFoundException", "ValidationException"), (code, status)
    made_dir = nodes[0].data_dir / "customization" / "models" / model_id
    assert not made_dir.exists(), f"node 0 kept the deleted model's files: {list(made_dir.iterdir())}"
