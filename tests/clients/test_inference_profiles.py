"""Application inference profiles through boto3: Create (201), Get, List (type filter,
paging), Delete; a profile's ARN as modelId on Converse; usage reported per profile."""

from __future__ import annotations

import time
import uuid

from basalt_support import CHAT_MODEL, expect_client_error, user_msg

REGION_ARN = "arn:aws:bedrock:us-east-1::foundation-model/"


def test_a_profile_is_created_used_reported_and_deleted(server, make_client, create_key):
    key = create_key(f"profiles-{uuid.uuid4().hex[:6]}")
    control, runtime = make_client("bedrock", key), make_client("bedrock-runtime", key)
    name = f"team-{uuid.uuid4().hex[:6]}"
    created = control.create_inference_profile(
        inferenceProfileName=name, description="chat for team A",
        modelSource={"copyFrom": REGION_ARN + CHAT_MODEL}, tags=[{"key": "team", "value": "a"}],
        clientRequestToken=f"tok-{name}")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201, created
    arn = created["inferenceProfileArn"]
    assert ":application-inference-profile/" in arn and created["status"] == "ACTIVE", created
    profile_id = arn.rsplit("/", 1)[1]
    again = control.create_inference_profile(
        inferenceProfileName=name, modelSource={"copyFrom": REGION_ARN + CHAT_MODEL},
        clientRequestToken=f"tok-{name}")
    assert again["inferenceProfileArn"] == arn, "a repeated client token returns the same profile"

    got = control.get_inference_profile(inferenceProfileIdentifier=arn)
    assert (got["inferenceProfileName"], got["inferenceProfileId"], got["type"], got["status"]) == (
        name, profile_id, "APPLICATION", "ACTIVE"), got
    assert got["models"] == [{"modelArn": REGION_ARN + CHAT_MODEL}], got
    assert got["description"] == "chat for team A"
    assert control.get_inference_profile(inferenceProfileIdentifier=profile_id)["inferenceProfileArn"] == arn

    listed = control.list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"]
    assert arn in [p["inferenceProfileArn"] for p in listed]
    assert control.list_inference_profiles(typeEquals="SYSTEM_DEFINED")["inferenceProfileSummaries"] == []

    answers = [runtime.converse(modelId=arn, messages=[user_msg("Say hi.")],
                                inferenceConfig={"maxTokens": 4, "temperature": 0}) for _ in range(2)]
    for a in answers:
        assert a["stopReason"] in ("end_turn", "max_tokens"), a
    deadline = time.monotonic() + 15
    while True:
        groups = server.cli_json("usage", "--json")["groups"]
        mine = [g for g in groups if g.get("inference_profile") == profile_id]
        if mine and sum(g["invocations"] for g in mine) >= 2:
            break
        assert time.monotonic() < deadline, f"no usage group for profile {profile_id}: {groups}"
        time.sleep(0.5)
    assert [(g["key_name"], g["model_id"], g["invocations"]) for g in mine] == [(key.name, CHAT_MODEL, 2)], mine
    assert mine[0]["input_tokens"] == sum(a["usage"]["inputTokens"] for a in answers), (mine, answers)
    assert mine[0]["output_tokens"] == sum(a["usage"]["outputTokens"] for a in answers), (mine, answers)

    expect_client_error(lambda: control.create_inference_profile(
        inferenceProfileName=name, modelSource={"copyFrom": REGION_ARN + CHAT_MODEL}), "ConflictException", 400)
    control.delete_inference_profile(inferenceProfileIdentifier=arn)
    expect_client_error(lambda: control.get_inference_profile(inferenceProfileIdentifier=arn),
                        "ResourceNotFoundException", 404)
    expect_client_error(lambda: runtime.converse(modelId=arn, messages=[user_msg("Hi")]),
                        "ResourceNotFoundException", 404)


def test_bad_profiles_are_refused_with_the_reason(control):
    expect_client_error(lambda: control.create_inference_profile(
        inferenceProfileName="-bad", modelSource={"copyFrom": REGION_ARN + CHAT_MODEL}), "ValidationException", 400)
    expect_client_error(lambda: control.create_inference_profile(
        inferenceProfileName="nomodel", modelSource={"copyFrom": REGION_ARN + "acme.nothing-v1:0"}),
        "ResourceNotFoundException", 404)
    expect_client_error(lambda: control.create_inference_profile(
        inferenceProfileName="notanarn", modelSource={"copyFrom": CHAT_MODEL}), "ValidationException", 400)
    expect_client_error(lambda: control.list_inference_profiles(typeEquals="OTHER"), "ValidationException", 400)
