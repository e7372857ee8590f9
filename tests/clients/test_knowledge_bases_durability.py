"""Knowledge-base ingestion that survives `kill -9`, and knowledge bases over an
S3-compatible bucket (moto's S3 server with IAM auth, as in test_batch_s3)."""

from __future__ import annotations

import os
import signal
import time
import uuid

import boto3
import pytest

from basalt_support import EMBED_MODEL, http_request
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


def ingestion_embeddings(srv) -> float:
    """basalt_invocations_total of the embedding model for ingestion, from /metrics."""
    from test_metering import SAMPLE_RE

    total = 0.0
    for line in http_request(srv.port, "GET", "/metrics").body.decode().splitlines():
        m = SAMPLE_RE.match(line)
        labels = (m.group(2) or "") if m else ""
        if (m and m.group(1) == "basalt_invocations_total" and f'model_id="{EMBED_MODEL}"' in labels
                and 'operation="KnowledgeBaseIngestion"' in labels):
            total += float(m.group(3))
    return total


def test_a_job_killed_during_ingestion_resumes_without_redoing_documents(tmp_path_factory):
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
    seen = []
    while True:
        job = agent.get_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, ingestionJobId=job_id)["ingestionJob"]
        done = job["statistics"]["numberOfNewDocumentsIndexed"]
        seen.append(done)
        if done >= 100:
            break
        assert job["status"] != "COMPLETE", "the job finished before it could be interrupted; raise DOCS"
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
    assert len(set(seen)) > 2, f"GetIngestionJob's statistics move while the job runs: {seen}"
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(timeout=30)

    srv = start_server(TEST_CONFIG, base, env)
    try:
        agent, agent_rt = clients(srv)
        resumed = wait_for_job(agent, kb_id, ds_id, job_id)
        assert resumed["status"] == "COMPLETE", resumed
        stats = resumed["statistics"]
        # Every document counted once, across the two processes: the resumed run
        # skips what the killed one counted, and counts as new what it indexed
        # without having counted it yet.
        assert stats["numberOfDocumentsScanned"] == DOCS, stats
        assert stats["numberOfNewDocumentsIndexed"] == DOCS, stats
        assert stats["numberOfModifiedDocumentsIndexed"] == stats["numberOfDocumentsFailed"] == 0, stats
        embedded_after = ingestion_embeddings(srv)
        assert embedded_after <= DOCS - done, (
            f"the resumed job embedded {embedded_after} documents; at most the {DOCS - done} the killed one had "
            "not counted")

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

        rerun = ingest(agent, kb_id, ds_id)
        assert rerun["statistics"]["numberOfDocumentsScanned"] == DOCS, rerun
        assert rerun["statistics"]["numberOfNewDocumentsIndexed"] == 0, rerun
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
