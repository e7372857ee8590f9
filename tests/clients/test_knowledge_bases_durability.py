"""Knowledge-base ingestion that survives `kill -9`, and knowledge bases over an
S3-compatible bucket (moto's S3 server with IAM auth, as in test_batch_s3)."""

from __future__ import annotations

import os
import signal
import time
import uuid

import boto3
import pytest

from conftest import BOTO_CONFIG, TEST_CONFIG, _tail, start_server, stop_server
from kb_support import create_kb, folder_source, ingest, sidecar, uris, wait_for_job
from test_batch_s3 import BUCKET, OTHER_BUCKET, s3, s3_store, start_s3_server  # noqa: F401 (fixtures)

DOCS = 1000


def clients(srv):
    key = srv.cli_json("keys", "create", "--name", f"kb-{uuid.uuid4().hex[:6]}", "--json")
    make = lambda service: boto3.session.Session().client(  # noqa: E731
        service, endpoint_url=srv.url, region_name="us-east-1", aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG)
    return make("bedrock-agent"), make("bedrock-agent-runtime")


def test_kill_during_ingestion_then_rerun_leaves_every_document_once(tmp_path_factory):
    base = tmp_path_factory.mktemp("kb-crash")
    folder = base / "docs"
    folder.mkdir()
    for i in range(DOCS):
        (folder / f"doc{i:04d}.txt").write_text(f"Document number {i} describes sample {i} of rock core {i % 37}.")
    env = {"BASALT_ALLOWED_PATHS": str(folder)}
    srv = start_server(TEST_CONFIG, base, env)
    agent, _ = clients(srv)
    kb_id = create_kb(agent, "crash")
    ds_id = folder_source(agent, kb_id, "docs", folder, chunking={"chunkingStrategy": "NONE"})
    job_id = agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id)["ingestionJob"]["ingestionJobId"]
    deadline = time.monotonic() + 120
    while True:
        job = agent.get_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, ingestionJobId=job_id)["ingestionJob"]
        done = job["statistics"]["numberOfNewDocumentsIndexed"]
        if done >= 20:
            break
        assert job["status"] != "COMPLETE", "the job finished before it could be interrupted; raise DOCS"
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(timeout=30)

    srv = start_server(TEST_CONFIG, base, env)
    try:
        agent, agent_rt = clients(srv)
        interrupted = agent.get_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, ingestionJobId=job_id)[
            "ingestionJob"]
        assert interrupted["status"] == "FAILED", interrupted
        assert "server stopped" in " ".join(interrupted["failureReasons"]), interrupted
        before = {d["identifier"]["s3"]["uri"] for d in agent.list_knowledge_base_documents(
            knowledgeBaseId=kb_id, dataSourceId=ds_id)["documentDetails"]}
        assert 20 <= len(before) < DOCS, len(before)

        rerun = ingest(agent, kb_id, ds_id)
        assert rerun["status"] == "COMPLETE", rerun
        stats = rerun["statistics"]
        assert stats["numberOfDocumentsScanned"] == DOCS, stats
        assert stats["numberOfNewDocumentsIndexed"] == DOCS - len(before), (stats, len(before))
        assert stats["numberOfModifiedDocumentsIndexed"] == 0, stats

        after = [d["identifier"]["s3"]["uri"] for d in agent.list_knowledge_base_documents(
            knowledgeBaseId=kb_id, dataSourceId=ds_id)["documentDetails"]]
        assert len(after) == len(set(after)) == DOCS
        for i in (0, 1, DOCS // 2, DOCS - 1):
            uri = (folder / f"doc{i:04d}.txt").as_uri()
            hits = agent_rt.retrieve(
                knowledgeBaseId=kb_id, retrievalQuery={"text": f"sample {i}"},
                retrievalConfiguration={"vectorSearchConfiguration": {
                    "numberOfResults": 5, "overrideSearchType": "HYBRID",
                    "filter": {"equals": {"key": "x-amz-bedrock-kb-source-uri", "value": uri}}}})["retrievalResults"]
            assert len(hits) == 1, (uri, hits)
            assert f"sample {i} " in hits[0]["content"]["text"]
    finally:
        crashed = stop_server(srv)
    assert crashed is None, _tail(srv.log_path)


@pytest.fixture(scope="module")
def s3_front(s3_store, tmp_path_factory):  # noqa: F811
    base = tmp_path_factory.mktemp("kb-s3")
    srv = start_s3_server(base, s3_store)
    yield srv
    crashed = stop_server(srv)
    assert crashed is None, f"the server crashed:\n{_tail(srv.log_path)}"


def test_knowledge_base_over_an_s3_bucket(s3_front, s3, tmp_path):  # noqa: F811
    prefix = f"kb-{uuid.uuid4().hex[:6]}/"
    s3.put_object(Bucket=BUCKET, Key=prefix + "rocks/basalt.txt",
                  Body=b"Basalt forms columnar joints when lava cools slowly.")
    s3.put_object(Bucket=BUCKET, Key=prefix + "rocks/basalt.txt.metadata.json",
                  Body=b'{"metadataAttributes": {"rock": "basalt"}}')
    s3.put_object(Bucket=BUCKET, Key=prefix + "rocks/granite.md", Body=b"Granite is made of quartz and feldspar.")
    s3.put_object(Bucket=BUCKET, Key=prefix + "rocks/broken.pdf", Body=b"%PDF-1.4 nope")
    s3.put_object(Bucket=BUCKET, Key="elsewhere/ignored.txt", Body=b"Outside the inclusion prefix.")
    agent, agent_rt = clients(s3_front)
    kb_id = create_kb(agent, "s3-rocks")
    ds = agent.create_data_source(
        knowledgeBaseId=kb_id, name="bucket",
        dataSourceConfiguration={"type": "S3", "s3Configuration": {
            "bucketArn": f"arn:aws:s3:::{BUCKET}", "inclusionPrefixes": [prefix]}})["dataSource"]
    job = ingest(agent, kb_id, ds["dataSourceId"])
    stats = job["statistics"]
    assert job["status"] == "COMPLETE", job
    assert (stats["numberOfDocumentsScanned"], stats["numberOfMetadataDocumentsScanned"],
            stats["numberOfNewDocumentsIndexed"], stats["numberOfDocumentsFailed"]) == (3, 1, 2, 1), stats
    hits = agent_rt.retrieve(knowledgeBaseId=kb_id, retrievalQuery={"text": "columnar joints"},
                             retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 5}})[
        "retrievalResults"]
    assert hits[0]["location"] == {"type": "S3", "s3Location": {"uri": f"s3://{BUCKET}/{prefix}rocks/basalt.txt"}}
    assert hits[0]["metadata"]["rock"] == "basalt"
    assert len(hits) == 2

    s3.delete_object(Bucket=BUCKET, Key=prefix + "rocks/granite.md")
    again = ingest(agent, kb_id, ds["dataSourceId"])["statistics"]
    assert again["numberOfDocumentsDeleted"] == 1 and again["numberOfNewDocumentsIndexed"] == 0, again

    from botocore.exceptions import ClientError
    with pytest.raises(ClientError) as e:
        agent.create_data_source(
            knowledgeBaseId=kb_id, name="other",
            dataSourceConfiguration={"type": "S3", "s3Configuration": {"bucketArn": f"arn:aws:s3:::{OTHER_BUCKET}"}})
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
