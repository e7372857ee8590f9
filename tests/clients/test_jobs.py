"""The job runner across processes: a batch job whose server is killed with SIGKILL
mid-job is taken over by another node (another `[jobs] node` name on the same store)
once the dead node's lease expires, and every record is written exactly once."""

from __future__ import annotations

from pathlib import Path

from conftest import TEST_CONFIG, start_server, stop_server
from test_batch import CHAT_MODEL, bedrock_client, create, output_lines, wait, write_input


def node_config(base: Path, node: str) -> Path:
    path = base / f"{node}.toml"
    path.write_text(TEST_CONFIG.read_text()
                    + f'\n[jobs]\nnode = "{node}"\nlease_secs = 3\npoll_millis = 200\n')
    return path


def test_a_killed_nodes_job_is_taken_over_by_another_node_after_its_lease(tmp_path_factory, _hermetic_client_env):
    base = tmp_path_factory.mktemp("jobs-takeover")
    root = base / "root"
    root.mkdir()
    env = {"BASALT_ALLOWED_PATHS": str(root)}
    srv = start_server(node_config(base, "node-a"), base, env)
    try:
        key = srv.cli_json("keys", "create", "--name", "jobs", "--json")
        control = bedrock_client(srv, key)
        inp, out = root / "takeover.jsonl", root / "out"
        ids = write_input(inp, 200)
        arn = create(control, CHAT_MODEL, inp, out)
        wait(control, arn, predicate=lambda j: j.get("processedRecordCount", 0) >= 20)
        held = {r["id"]: r for r in srv.cli_json("jobs", "list", "--json")}[arn.rsplit("/", 1)[1]]
        assert held["node"] == "node-a" and held["state"] == "InProgress", held
        srv.proc.kill()  # SIGKILL: node-a never gives its lease back
        srv.proc.wait(timeout=30)
    except BaseException:
        stop_server(srv)
        raise
    srv = start_server(node_config(base, "node-b"), base, env)
    try:
        control = bedrock_client(srv, key)
        job = wait(control, arn)
        assert job["status"] == "Completed", job
        lines = output_lines(out, arn, "takeover.jsonl")
        assert sorted(line["recordId"] for line in lines) == ids, "every record exactly once across the two nodes"
        row = {r["id"]: r for r in srv.cli_json("jobs", "list", "--json")}[arn.rsplit("/", 1)[1]]
        assert (row["state"], row["claims"], row["node"]) == ("Completed", 2, None), \
            "claimed by node-a, then once by node-b after the lease"
    finally:
        stop_server(srv)
