"""Provisioned throughput through boto3: the lifecycle on the `bedrock` control plane,
invocation by the provisioned model's ARN on `bedrock-runtime`, capacity limits, and
custom models that only provisioned throughput may run.

The test server's chat engine has 4 slots and keeps 1 for on-demand traffic, so at
most 3 units (1 slot each) can be bought. Every test gives its units back."""
import json
import uuid
from contextlib import contextmanager

from basalt_support import CHAT_MODEL, EMBED_MODEL, chatml, expect_client_error, user_msg

CUSTOM_MODEL = "basalt.smollm2-135m-custom-v1:0"


@contextmanager
def provisioned(control, model=CHAT_MODEL, units=1, **kw):
    arn = control.create_provisioned_model_throughput(
        modelUnits=units, provisionedModelName=f"pt-{uuid.uuid4().hex[:8]}", modelId=model, **kw
    )["provisionedModelArn"]
    try:
        yield arn
    finally:
        control.delete_provisioned_model_throughput(provisionedModelId=arn)


def test_lifecycle(control, server):
    name = f"pt-{uuid.uuid4().hex[:8]}"
    resp = control.create_provisioned_model_throughput(
        modelUnits=1, provisionedModelName=name, modelId=CHAT_MODEL, commitmentDuration="OneMonth")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    arn = resp["provisionedModelArn"]
    assert ":provisioned-model/" in arn
    got = control.get_provisioned_model_throughput(provisionedModelId=arn)
    assert (got["status"], got["modelUnits"], got["desiredModelUnits"], got["provisionedModelName"]) == (
        "InService", 1, 1, name)
    assert got["foundationModelArn"].endswith(f"foundation-model/{CHAT_MODEL}")
    assert got["commitmentDuration"] == "OneMonth" and got["commitmentExpirationTime"] > got["creationTime"]
    listed = control.list_provisioned_model_throughputs(nameContains=name)["provisionedModelSummaries"]
    assert [s["provisionedModelArn"] for s in listed] == [arn]
    usage = server.cli_json("usage", "--json")["provisioned"]
    entry = next(p for p in usage if arn.endswith(p["id"]))
    assert entry["model_units"] == 1 and entry["cost_usd"] >= 0 and entry["hours"] >= 0
    control.update_provisioned_model_throughput(provisionedModelId=arn, desiredProvisionedModelName=name + "-b")
    assert control.get_provisioned_model_throughput(provisionedModelId=name + "-b")["provisionedModelArn"] == arn
    control.delete_provisioned_model_throughput(provisionedModelId=arn)
    expect_client_error(lambda: control.get_provisioned_model_throughput(provisionedModelId=arn),
                        "ResourceNotFoundException", 404)


def test_a_purchase_the_node_cannot_honour_is_refused(control):
    expect_client_error(
        lambda: control.create_provisioned_model_throughput(
            modelUnits=4, provisionedModelName=f"pt-{uuid.uuid4().hex[:8]}", modelId=CHAT_MODEL),
        "ServiceQuotaExceededException", 400, message_contains="capacity for 3 more")
    with provisioned(control, units=2):
        # The custom model shares the chat model's engine, so it shares its capacity.
        err = expect_client_error(
            lambda: control.create_provisioned_model_throughput(
                modelUnits=2, provisionedModelName=f"pt-{uuid.uuid4().hex[:8]}", modelId=CUSTOM_MODEL),
            "ServiceQuotaExceededException", 400)
        assert "capacity for 1 more" in err.response["Error"]["Message"]
    expect_client_error(
        lambda: control.create_provisioned_model_throughput(
            modelUnits=1, provisionedModelName=f"pt-{uuid.uuid4().hex[:8]}", modelId=EMBED_MODEL),
        "ValidationException", 400, message_contains="embedding model")
    expect_client_error(
        lambda: control.create_provisioned_model_throughput(
            modelUnits=1, provisionedModelName="bad name", modelId=CHAT_MODEL),
        "ValidationException", 400)


def test_invoke_by_arn_bypasses_on_demand_quotas(server, control, make_client):
    data = server.cli_json("keys", "create", "--name", f"pt-{uuid.uuid4().hex[:6]}", "--json", "--rpm", "1")
    from conftest import Key

    key = Key(id=data["id"], name=data["name"], access_key_id=data["access_key_id"],
              secret_access_key=data["secret_access_key"], bearer_token=data["bearer_token"])
    runtime = make_client("bedrock-runtime", key)
    with provisioned(control) as arn:
        for _ in range(3):
            resp = runtime.converse(modelId=arn, messages=[user_msg("Hi")],
                                    inferenceConfig={"maxTokens": 2, "temperature": 0})
            assert resp["usage"]["outputTokens"] >= 1
        body = json.loads(runtime.invoke_model(modelId=arn, body=json.dumps(
            {"prompt": chatml("Hi"), "max_gen_len": 2}))["body"].read())
        assert body["generation_token_count"] >= 1
        stream = runtime.converse_stream(modelId=arn, messages=[user_msg("Hi")],
                                         inferenceConfig={"maxTokens": 2, "temperature": 0})
        assert any("messageStop" in e for e in stream["stream"])
        # The same key on demand is held to its 1 request per minute.
        runtime.converse(modelId=CHAT_MODEL, messages=[user_msg("Hi")], inferenceConfig={"maxTokens": 1})
        expect_client_error(lambda: runtime.converse(modelId=CHAT_MODEL, messages=[user_msg("Hi")],
                                                     inferenceConfig={"maxTokens": 1}),
                            "ThrottlingException", 429)
    import time

    deadline = time.monotonic() + 30
    while True:
        rows = [r for r in server.cli_json("usage", "--json")["rows"]
                if r["key_name"] == key.name and r["inference_type"] == "PROVISIONED"]
        if (rows and rows[0]["invocations"] >= 5) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rows and rows[0]["invocations"] == 5, rows
    assert rows[0]["cost_usd"] == 0, "provisioned calls are billed by the hour, not by the token"
    assert rows[0]["output_tokens"] > 0, "tokens are counted"


def test_custom_models_need_provisioned_throughput(control, runtime):
    expect_client_error(lambda: runtime.converse(modelId=CUSTOM_MODEL, messages=[user_msg("Hi")]),
                        "ValidationException", 400, message_contains="only through provisioned throughput")
    with provisioned(control, model=CUSTOM_MODEL) as arn:
        resp = runtime.converse(modelId=arn, messages=[user_msg("Hi")], inferenceConfig={"maxTokens": 2})
        assert resp["usage"]["outputTokens"] >= 1
    expect_client_error(lambda: runtime.converse(modelId=arn, messages=[user_msg("Hi")]),
                        "ResourceNotFoundException", 404)
