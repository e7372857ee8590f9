"""A fleet: three Basalt nodes sharing one PostgreSQL store (`[store] url`) behind the
small load balancer of `scripts/fleet_lb.py`, as `scripts/fleet.sh` starts one.

What must hold across nodes: a key made on one node signs on every node; a revoked
key stops working on every node within the key watcher's bound (a notification, at
worst its one-second re-read); a requests-per-minute quota admits exactly its limit
whichever nodes the requests reach; `basalt usage` on any node reports the whole
fleet; a batch job whose node is killed with SIGKILL is taken over by another node
once its lease expires, every record written exactly once; and while the database
restarts, calls that need it fail with a modelled 503 (none hang), calls that do not
keep working, and every invocation is metered exactly once when it is back.

The chat model is the scripted OpenAI double (scripted_double.py), so records take
as long as the test says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from basalt_support import http_request, inline_table, remote_embedding_toml, remote_model_toml, user_msg
from conftest import BOTO_CONFIG, REPO, Server, _tail, start_server, stop_server
from kb_support import EMBEDDED, ROLE_ARN, custom_source, ingest_texts, rds_storage, start_postgres
from scripted_double import API_KEY as DOUBLE_KEY
from scripted_double import DIMENSIONS, ScriptedDouble
from test_batch import create, output_lines, wait, write_input

REGION = "us-east-1"
CHAT = "fleet.chat-v1:0"
UPSTREAM = "fleet-upstream"
EMBED = "fleet.embed-v1:0"
EMBED_UPSTREAM = "fleet-embed"
DOUBLE_KEY_ENV = "BASALT_TEST_FLEET_KEY"
LEASE_SECS = 3
# What the key watcher promises: a notification at once, at worst its re-read every
# second. The test allows scheduling noise on a shared machine on top.
REVOCATION_BOUND_SECS = 1.0
REVOCATION_ALLOWANCE_SECS = 4.0


@dataclass
class Fleet:
    nodes: list[Server]
    lb_port: int
    lb: subprocess.Popen
    config: Path
    base: Path
    root: Path
    double: ScriptedDouble
    pg: object
    env: dict

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def node_base(self, i: int) -> Path:
        return self.base / f"node{i}"


def fleet_config(base: Path, store_url: str, double: ScriptedDouble) -> Path:
    upstream = "upstream = " + inline_table(api="openai", base_url=double.base_url, model=UPSTREAM,
                                            api_key_env=DOUBLE_KEY_ENV, timeout_secs=30, context_window=32000)
    embed = "upstream = " + inline_table(api="openai", base_url=double.base_url, model=EMBED_UPSTREAM,
                                         api_key_env=DOUBLE_KEY_ENV, timeout_secs=30)
    text = (f'region = "{REGION}"\n'
            f"[store]\nurl = {json.dumps(store_url)}\nacquire_timeout_ms = 3000\n"
            f"[jobs]\nlease_secs = {LEASE_SECS}\npoll_millis = 200\n"
            "[batch]\nconcurrency = 2\n"
            f"[knowledge_bases.postgres.fleet]\nurl = {json.dumps(store_url)}\n"
            + remote_model_toml(CHAT, upstream, extra=("routing = { retries = 0 }",
                                                       'inference_types = ["ON_DEMAND", "PROVISIONED"]'))
            + remote_embedding_toml(EMBED, embed, DIMENSIONS))
    path = base / "fleet.toml"
    path.write_text(text)
    return path


def start_node(fleet_base: Path, i: int, config: Path, env: dict, master_key: bytes | None) -> Server:
    base = fleet_base / f"node{i}"
    (base / "data").mkdir(parents=True, exist_ok=True)
    if master_key is not None:
        # Every node derives SigV4 secrets from the same master key.
        (base / "data" / "master.key").write_bytes(master_key)
    return start_server(config, base, env)


def start_lb(ports: list[int]) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "fleet_lb.py"), "0",
                             *[f"127.0.0.1:{p}" for p in ports]],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.startswith("listening on 127.0.0.1:"), f"the load balancer did not start: {line!r}"
    return proc, int(line.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, _hermetic_client_env):
    base = tmp_path_factory.mktemp("fleet")
    root = base / "root"
    root.mkdir()
    pg, uri = start_postgres(base / "pg")
    double = ScriptedDouble()
    config = fleet_config(base, uri, double)
    # The CLI (`basalt keys`, `basalt usage`) reads the same configuration, so it
    # works on the fleet's store from any node's data directory.
    env = {"BASALT_ALLOWED_PATHS": str(root), DOUBLE_KEY_ENV: DOUBLE_KEY, "BASALT_CONFIG": str(config)}
    nodes: list[Server] = []
    lb = None
    try:
        nodes.append(start_node(base, 0, config, env, None))
        master = (nodes[0].data_dir / "master.key").read_bytes()
        for i in (1, 2):
            nodes.append(start_node(base, i, config, env, master))
        lb, lb_port = start_lb([n.port for n in nodes])
        yield Fleet(nodes, lb_port, lb, config, base, root, double, pg, env)
    finally:
        if lb is not None:
            lb.terminate()
            lb.wait(timeout=10)
        crashed = [(i, stop_server(n)) for i, n in enumerate(nodes)]
        double.close()
        pg.cleanup()
    bad = [(i, code) for i, code in crashed if code not in (None, -9)]
    assert not bad, f"fleet nodes exited while the tests ran: {bad}\n" + "\n".join(
        _tail(nodes[i].log_path) for i, _ in bad)


def runtime(url: str, key: dict):
    return boto3.session.Session().client(
        "bedrock-runtime", endpoint_url=url, region_name=REGION, aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG)


def control(url: str, key: dict):
    return boto3.session.Session().client(
        "bedrock", endpoint_url=url, region_name=REGION, aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG)


def converse(url: str, key: dict, text: str = "hello"):
    return runtime(url, key).converse(modelId=CHAT, messages=[user_msg(text)],
                                      inferenceConfig={"maxTokens": 8})


def error_code(call) -> str | None:
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def agent_clients(url: str, key: dict):
    def make(service):
        return boto3.session.Session().client(
            service, endpoint_url=url, region_name=REGION, aws_access_key_id=key["access_key_id"],
            aws_secret_access_key=key["secret_access_key"], config=BOTO_CONFIG)

    return make("bedrock-agent"), make("bedrock-agent-runtime")


def new_key(node: Server, name: str) -> dict:
    return node.cli_json("keys", "create", "--name", name, "--json")


def test_a_key_made_on_one_node_signs_on_every_node_and_through_the_balancer(fleet):
    key = new_key(fleet.nodes[1], "fleet-everywhere")
    for i, node in enumerate(fleet.nodes):
        out = converse(node.url, key)
        assert out["stopReason"] in ("end_turn", "max_tokens"), f"node {i}: {out}"
    for _ in range(3):
        converse(fleet.url, key)
    # Each node's /metrics names the node, so a fleet's scrapes sum and split cleanly.
    for i, node in enumerate(fleet.nodes):
        name = (node.data_dir / "node-id").read_text().strip()
        text = http_request(node.port, "GET", "/metrics").body.decode()
        samples = [line for line in text.splitlines() if line and not line.startswith("#")]
        unnamed = [line for line in samples if f'node="{name}"' not in line]
        assert samples and not unnamed, f"node {i}'s series without its name {name}: {unnamed[:5]}"
    # `basalt usage --per-node` on any node splits the fleet's usage by serving node.
    names = {(node.data_dir / "node-id").read_text().strip() for node in fleet.nodes}
    deadline = time.monotonic() + 15
    while True:
        groups = [g for g in fleet.nodes[0].cli_json("usage", "--json", "--since", "1h", "--per-node")["groups"]
                  if g["key_name"] == "fleet-everywhere"]
        if sum(g["invocations"] for g in groups) >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sum(g["invocations"] for g in groups) == 6, groups
    assert {g["node"] for g in groups} == names, f"every node served one call at least: {groups}"


def test_a_revoked_key_stops_on_every_node_within_the_watchers_bound(fleet):
    key = new_key(fleet.nodes[0], "fleet-revoked")
    for node in fleet.nodes:
        converse(node.url, key)  # every node has the key in its cache now
    fleet.nodes[2].cli("keys", "revoke", key["access_key_id"])
    revoked_at = time.monotonic()
    took = {}
    pending = set(range(len(fleet.nodes)))
    while pending and time.monotonic() - revoked_at < REVOCATION_BOUND_SECS + REVOCATION_ALLOWANCE_SECS:
        for i in sorted(pending):
            code = error_code(lambda: converse(fleet.nodes[i].url, key))
            if code is not None:
                assert code == "AccessDeniedException", f"node {i} refused the revoked key with {code}"
                took[i] = time.monotonic() - revoked_at
                pending.discard(i)
        time.sleep(0.02)
    assert not pending, f"nodes {sorted(pending)} still accept a key revoked on node 2"
    print(f"\nrevocation reached every node within {max(took.values()):.3f} s: {took}")


def test_a_pgvector_knowledge_base_serves_every_node_and_an_embedded_one_is_refused(fleet):
    key = new_key(fleet.nodes[0], "fleet-kb")
    agent0, _ = agent_clients(fleet.nodes[0].url, key)
    agent1, _ = agent_clients(fleet.nodes[1].url, key)
    _, runtime2 = agent_clients(fleet.nodes[2].url, key)
    vector = {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
        "embeddingModelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{EMBED}"}}
    with pytest.raises(ClientError) as refused:
        agent0.create_knowledge_base(name="fleet-embedded", roleArn=ROLE_ARN,
                                     knowledgeBaseConfiguration=vector, storageConfiguration=EMBEDDED)
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException" and "RDS" in error["Message"], error
    kb = agent0.create_knowledge_base(name="fleet-pgvector", roleArn=ROLE_ARN, knowledgeBaseConfiguration=vector,
                                      storageConfiguration=rds_storage("kb_fleet", connection="fleet"))
    kb_id = kb["knowledgeBase"]["knowledgeBaseId"]
    ds_id = custom_source(agent1, kb_id, "docs")
    ingest_texts(agent1, kb_id, ds_id, {
        "columns": "The basalt columns of Fingal's Cave are hexagonal, formed as lava cooled.",
        "pumice": "Pumice is so full of gas bubbles that it floats on water."})
    found = runtime2.retrieve(knowledgeBaseId=kb_id, retrievalQuery={"text": "hexagonal basalt columns"},
                              retrievalConfiguration={"vectorSearchConfiguration": {
                                  "numberOfResults": 1, "overrideSearchType": "HYBRID"}})["retrievalResults"]
    assert found and "hexagonal" in found[0]["content"]["text"], \
        f"a document ingested through node 1 must be found through node 2: {found}"


def test_provisioned_throughput_made_on_one_node_serves_on_every_node(fleet):
    key = new_key(fleet.nodes[0], "fleet-provisioned")
    arn = control(fleet.nodes[0].url, key).create_provisioned_model_throughput(
        modelUnits=1, provisionedModelName="fleet-pt", modelId=CHAT)["provisionedModelArn"]
    try:
        for i, node in enumerate(fleet.nodes):
            out = runtime(node.url, key).converse(modelId=arn, messages=[user_msg("hello")],
                                                  inferenceConfig={"maxTokens": 4})
            assert out["stopReason"] in ("end_turn", "max_tokens"), f"node {i}: {out}"
        deadline = time.monotonic() + 10  # each node's meter writes within tens of milliseconds
        while True:
            rows = fleet.nodes[2].cli_json("usage", "--json", "--since", "1h")
            provisioned = [(r["inference_type"], r["invocations"]) for r in rows["rows"]
                           if r["key_name"] == "fleet-provisioned"]
            if provisioned == [("PROVISIONED", 3)] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert provisioned == [("PROVISIONED", 3)], \
            f"three calls, one per node, metered as provisioned: {provisioned}"
        assert [reserved_units(node) for node in fleet.nodes] == [1, 1, 1], "each node reserved the unit"
    finally:
        control(fleet.nodes[1].url, key).delete_provisioned_model_throughput(provisionedModelId=arn)
    # Every node gives the unit back: the deleting one at once, the others when they
    # next compare their reservations with the store (every 2 s, 5 s after reserving).
    deadline = time.monotonic() + 20
    while any(reserved_units(node) for node in fleet.nodes):
        assert time.monotonic() < deadline, [reserved_units(node) for node in fleet.nodes]
        time.sleep(0.25)


def reserved_units(node) -> int:
    """basalt_provisioned_units_reserved of the fleet's chat model on a node."""
    text = http_request(node.port, "GET", "/metrics").body.decode()
    found = re.findall(r'^basalt_provisioned_units_reserved\{[^}]*capacity="model:' + re.escape(CHAT)
                       + r'"[^}]*\} (\S+)$', text, re.M)
    return int(float(found[0])) if found else 0


def wait_for_fresh_minute(margin_secs: float = 20.0) -> None:
    """Quota windows are calendar minutes: start where the test has `margin_secs`."""
    left = 60 - time.time() % 60
    if left < margin_secs:
        time.sleep(left + 0.2)


def test_a_quota_admits_exactly_its_limit_across_the_fleet(fleet):
    key = new_key(fleet.nodes[0], "fleet-quota")
    limit = 12
    fleet.nodes[1].cli("keys", "update", key["access_key_id"], "--rpm", str(limit))
    wait_for_fresh_minute()
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def fire(i: int) -> None:
        node = fleet.nodes[i % len(fleet.nodes)]
        code = error_code(lambda: converse(node.url, key, f"request {i}"))
        with lock:
            results.append((i % len(fleet.nodes), code))

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(36)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    admitted = [node for node, code in results if code is None]
    refused = [code for _, code in results if code is not None]
    assert len(results) == 36
    assert set(refused) <= {"ThrottlingException"}, f"refusals other than throttles: {refused}"
    assert len(admitted) == limit, (
        f"3 nodes admitted {len(admitted)} requests of a key limited to {limit}/min "
        f"(by node: {[admitted.count(i) for i in range(3)]})")
    # Every node's CLI reads the fleet's metering.
    time.sleep(1.0)  # metering batches are written within a few tens of milliseconds
    for i, node in enumerate(fleet.nodes):
        rows = node.cli_json("usage", "--json", "--since", "1h")
        mine = [r for r in rows["rows"] if r["key_name"] == "fleet-quota"] if isinstance(rows, dict) else []
        invocations = sum(r["invocations"] for r in mine)
        assert invocations == 36, f"node {i}'s `basalt usage` counts {invocations} of the fleet's 36 calls: {mine}"


def test_a_batch_job_survives_the_death_of_its_node(fleet):
    key = new_key(fleet.nodes[0], "fleet-batch")
    n = 40
    # Each record takes 0.2 s upstream; two at a time, the job runs about 4 s.
    fleet.double.script(UPSTREAM, [{"text": "ok", "delay": 0.2} for _ in range(3 * n)])
    work = fleet.root / "batch"
    work.mkdir()
    inp, out = work / "records.jsonl", work / "out"
    ids = write_input(inp, n)
    arn = create(control(fleet.url, key), CHAT, inp, out)
    job_id = arn.rsplit("/", 1)[1]
    wait(control(fleet.url, key), arn, predicate=lambda j: j.get("processedRecordCount", 0) >= 6)
    row = {r["id"]: r for r in fleet.nodes[0].cli_json("jobs", "list", "--json")}[job_id]
    assert row["state"] == "InProgress" and row["node"], row
    owners = {(n.data_dir / "node-id").read_text().strip(): i for i, n in enumerate(fleet.nodes)}
    victim = owners[row["node"]]
    fleet.nodes[victim].proc.kill()  # SIGKILL: the lease is never given back
    fleet.nodes[victim].proc.wait(timeout=30)
    try:
        survivor = fleet.nodes[(victim + 1) % len(fleet.nodes)]
        job = wait(control(survivor.url, key), arn, timeout=120)
        assert job["status"] == "Completed", job
        lines = output_lines(out, arn, "records.jsonl")
        assert sorted(line["recordId"] for line in lines) == ids, \
            "every record exactly once across the dead node and the one that took over"
        after = {r["id"]: r for r in survivor.cli_json("jobs", "list", "--json")}[job_id]
        assert after["state"] == "Completed" and after["claims"] == 2, \
            f"claimed by the killed node, then once by another after the lease: {after}"
    finally:
        # The node comes back (same data directory, same node name) for later tests.
        fleet.nodes[victim] = start_server(fleet.config, fleet.node_base(victim), fleet.env)


def test_a_database_restart_fails_what_needs_it_with_503_and_meters_once(fleet):
    key = new_key(fleet.nodes[0], "fleet-pg-restart")
    node = fleet.nodes[1]
    converse(node.url, key)  # the node has the key cached
    pg = fleet.pg
    pg.stop()
    try:
        started = time.monotonic()
        code = error_code(lambda: control(node.url, key).list_model_invocation_jobs())
        took = time.monotonic() - started
        assert code == "ServiceUnavailableException", f"a control-plane call with the database down answered {code}"
        assert took < 15, f"the call waited {took:.1f} s for the database instead of failing"
        ready = http_request(node.port, "GET", "/ready", timeout=15)
        assert ready.status == 503 and ready.json()["ready"] is False, \
            f"/ready must say the node cannot serve while its store is down: {ready.status} {ready.body!r}"
        assert http_request(node.port, "GET", "/health").status == 200, "/health says only that the process is up"
        # An inference call needs no database: it is served, and its metering waits.
        out = converse(node.url, key, "while the database is down")
        assert out["stopReason"] in ("end_turn", "max_tokens"), out
    finally:
        with pg._lock:
            pg.ensure_postgres_running()
    deadline = time.monotonic() + 30
    while True:
        code = error_code(lambda: control(node.url, key).list_model_invocation_jobs())
        if code is None and http_request(node.port, "GET", "/ready").status == 200:
            break
        assert time.monotonic() < deadline, f"the node did not reconnect after the restart: {code}"
        time.sleep(0.3)
    deadline = time.monotonic() + 30
    while True:
        rows = node.cli_json("usage", "--json", "--since", "1h")
        mine = [r for r in rows["rows"] if r["key_name"] == "fleet-pg-restart"]
        count = sum(r["invocations"] for r in mine)
        if count >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert count == 2, f"two calls must be metered exactly once each, found {count}: {mine}"


def test_sigterm_drains_a_node_with_streams_in_flight(fleet):
    """SIGTERM: the node takes no new connection, the streams it is serving finish whole,
    then it exits cleanly; the balancer sends new work to the other nodes meanwhile."""
    import signal
    import socket

    key = new_key(fleet.nodes[0], "fleet-drain")
    words = " ".join(f"word{i}" for i in range(40))
    # Each answer waits 2 s upstream, so the streams are in flight when SIGTERM lands.
    fleet.double.script(UPSTREAM, [{"text": words, "delay": 2.0} for _ in range(3)])
    node = fleet.nodes[1]
    results: list[str] = []
    errors: list[str] = []

    def stream():
        try:
            out = runtime(node.url, key).converse_stream(modelId=CHAT, messages=[user_msg("talk")],
                                                         inferenceConfig={"maxTokens": 200})
            text = ""
            for event in out["stream"]:
                text += event.get("contentBlockDelta", {}).get("delta", {}).get("text", "")
            results.append(text)
        except Exception as e:  # noqa: BLE001 — the assertion below names it
            errors.append(repr(e))

    before = len(fleet.double.chat_requests(UPSTREAM))
    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    # SIGTERM once all three are in flight: the node has sent each upstream (a busy
    # machine can take more than a second to get there).
    deadline = time.monotonic() + 30
    while len(fleet.double.chat_requests(UPSTREAM)) < before + 3:
        assert time.monotonic() < deadline, f"the streams never reached the upstream: {errors}"
        time.sleep(0.05)
    node.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    refused = False
    try:
        socket.create_connection(("127.0.0.1", node.port), timeout=2).close()
    except OSError:
        refused = True
    # Meanwhile the fleet answers through the balancer (the draining node refuses).
    out = converse(fleet.url, key)
    assert out["stopReason"] in ("end_turn", "max_tokens"), out
    for t in threads:
        t.join(timeout=60)
    code = node.proc.wait(timeout=60)
    try:
        assert not errors, f"streams in flight at SIGTERM failed: {errors}"
        assert results == [words] * 3, f"every stream in flight must finish whole: {results}"
        assert refused, "a draining node must not accept new connections"
        assert code == 0, f"the drained node exited with {code}"
    finally:
        fleet.nodes[1] = start_server(fleet.config, fleet.node_base(1), fleet.env)
