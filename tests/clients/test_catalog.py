"""Control plane: ListFoundationModels / GetFoundationModel through boto3 `bedrock`."""

import re
import time
import uuid

import pytest

from basalt_support import (
    CHAT_MODEL,
    EMBED_MODEL,
    EOL_MODEL,
    LEGACY_MODEL,
    UNKNOWN_MODEL,
    expect_client_error,
)

CHAT_MODELS = {CHAT_MODEL, LEGACY_MODEL}


def _ids(resp) -> set:
    return {m["modelId"] for m in resp["modelSummaries"]}


def _by_id(resp) -> dict:
    out = {}
    for m in resp["modelSummaries"]:
        assert m["modelId"] not in out, f"model {m['modelId']} listed twice"
        out[m["modelId"]] = m
    return out


@pytest.fixture(scope="module")
def listing(control):
    resp = control.list_foundation_models()
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    return resp


def _check_summary(m: dict):
    mid = m["modelId"]
    arn_re = r"^arn:aws:bedrock:[a-z0-9-]+::foundation-model/" + re.escape(mid) + r"$"
    assert re.match(arn_re, m["modelArn"]), f"{mid}: bad modelArn {m['modelArn']!r}"
    assert isinstance(m.get("providerName"), str) and m["providerName"], f"{mid}: no providerName"
    types = m.get("inferenceTypesSupported")
    assert types and set(types) <= {"ON_DEMAND", "PROVISIONED"}, (
        f"{mid}: inferenceTypesSupported is {types!r}"
    )
    assert isinstance(m.get("responseStreamingSupported"), bool), (
        f"{mid}: responseStreamingSupported missing or not a bool"
    )
    assert m.get("modelLifecycle", {}).get("status") in ("ACTIVE", "LEGACY"), (
        f"{mid}: modelLifecycle.status is {m.get('modelLifecycle')!r}"
    )


def test_list_contains_configured_models(listing):
    ids = _ids(listing)
    for mid in (CHAT_MODEL, EMBED_MODEL, LEGACY_MODEL):
        assert mid in ids, f"{mid} missing from ListFoundationModels: {sorted(ids)}"


def test_list_hides_eol_models(listing):
    assert EOL_MODEL not in _ids(listing), "an EOL model must not be listed"


def test_every_summary_is_well_formed(listing):
    assert listing["modelSummaries"], "no models listed"
    for m in _by_id(listing).values():
        _check_summary(m)


def test_chat_model_summary(listing):
    m = _by_id(listing)[CHAT_MODEL]
    assert m["providerName"].lower() == "huggingfacetb", m["providerName"]
    assert "TEXT" in m["inputModalities"], m["inputModalities"]
    assert m["outputModalities"] == ["TEXT"], m["outputModalities"]
    assert m["responseStreamingSupported"] is True
    assert m["modelLifecycle"]["status"] == "ACTIVE"


def test_embedding_model_summary(listing):
    m = _by_id(listing)[EMBED_MODEL]
    assert m["providerName"].lower() == "sentence-transformers", m["providerName"]
    assert "TEXT" in m["inputModalities"], m["inputModalities"]
    assert m["outputModalities"] == ["EMBEDDING"], m["outputModalities"]
    assert m["responseStreamingSupported"] is False, "embedder cannot stream"
    assert m["modelLifecycle"]["status"] == "ACTIVE"


def test_legacy_model_summary(listing):
    m = _by_id(listing)[LEGACY_MODEL]
    assert m["modelLifecycle"]["status"] == "LEGACY", m["modelLifecycle"]


@pytest.mark.parametrize("provider", ["HuggingFaceTB", "huggingfacetb", "HUGGINGFACETB"])
def test_filter_by_provider_chat(control, provider):
    ids = _ids(control.list_foundation_models(byProvider=provider))
    assert CHAT_MODELS <= ids, f"byProvider={provider} lacks chat models: {sorted(ids)}"
    assert EMBED_MODEL not in ids, f"byProvider={provider} returned the embedder"


def test_filter_by_provider_embedder(control):
    ids = _ids(control.list_foundation_models(byProvider="sentence-transformers"))
    assert ids == {EMBED_MODEL}, f"byProvider=sentence-transformers returned {sorted(ids)}"


def test_filter_by_unknown_provider_is_empty(control):
    resp = control.list_foundation_models(byProvider="nosuchprovider")
    assert resp["modelSummaries"] == [], resp["modelSummaries"]


def test_filter_by_output_modality_embedding(control):
    ids = _ids(control.list_foundation_models(byOutputModality="EMBEDDING"))
    assert ids == {EMBED_MODEL}, f"byOutputModality=EMBEDDING returned {sorted(ids)}"


def test_filter_by_output_modality_text(control):
    ids = _ids(control.list_foundation_models(byOutputModality="TEXT"))
    assert CHAT_MODELS <= ids, f"byOutputModality=TEXT lacks chat models: {sorted(ids)}"
    assert EMBED_MODEL not in ids, "byOutputModality=TEXT returned the embedder"


def test_filter_by_inference_type(control, listing):
    custom = "basalt.smollm2-135m-custom-v1:0"
    on_demand = _ids(control.list_foundation_models(byInferenceType="ON_DEMAND"))
    assert on_demand == _ids(listing) - {custom}, "every model but the custom one is ON_DEMAND"
    provisioned = _ids(control.list_foundation_models(byInferenceType="PROVISIONED"))
    assert provisioned == {CHAT_MODEL, custom}, provisioned


def test_filters_combine(control):
    resp = control.list_foundation_models(byProvider="HuggingFaceTB", byOutputModality="EMBEDDING")
    assert resp["modelSummaries"] == [], "HuggingFaceTB has no embedding model"


@pytest.mark.parametrize("model_id", [CHAT_MODEL, EMBED_MODEL, LEGACY_MODEL])
def test_get_foundation_model_matches_listing(control, listing, model_id):
    details = control.get_foundation_model(modelIdentifier=model_id)["modelDetails"]
    summary = _by_id(listing)[model_id]
    _check_summary(details)
    for field in (
        "modelId",
        "modelArn",
        "providerName",
        "inputModalities",
        "outputModalities",
        "responseStreamingSupported",
        "inferenceTypesSupported",
    ):
        assert details.get(field) == summary.get(field), (
            f"GetFoundationModel({model_id}).{field}={details.get(field)!r} "
            f"but ListFoundationModels says {summary.get(field)!r}"
        )
    assert details["modelLifecycle"]["status"] == summary["modelLifecycle"]["status"]


def test_get_unknown_model_is_not_found(control):
    expect_client_error(
        lambda: control.get_foundation_model(modelIdentifier=UNKNOWN_MODEL),
        "ResourceNotFoundException",
        404,
    )
    # still serving
    assert CHAT_MODEL in _ids(control.list_foundation_models())


ALIAS = "anthropic.claude-3-haiku-20240307-v1:0"


def test_an_alias_answers_as_its_target_and_is_listed_as_an_alias(runtime, control, raw_get, key):
    """`[[aliases]]` in the test configuration maps a Bedrock model ID to SmolLM2:
    code that hard-codes the ID runs unchanged, and says which model answered."""
    seen = {}
    runtime.meta.events.register(
        "after-call.bedrock-runtime.Converse",
        lambda http_response, **kw: seen.update(http_response.headers),
    )
    r = runtime.converse(modelId=ALIAS, messages=[{"role": "user", "content": [{"text": "Hi"}]}],
                         inferenceConfig={"maxTokens": 2, "temperature": 0.0})
    assert r["usage"]["outputTokens"] >= 1
    assert seen.get("x-basalt-answered-by") == CHAT_MODEL, seen
    models = {m["modelId"]: m for m in control.list_foundation_models()["modelSummaries"]}
    assert ALIAS in models and models[ALIAS]["modelArn"].endswith(f"foundation-model/{ALIAS}")
    got = control.get_foundation_model(modelIdentifier=ALIAS)["modelDetails"]
    assert got["modelId"] == ALIAS
    # The raw answer names the target (boto3 drops the field it does not model).
    raw = raw_get("/foundation-models", headers={"Authorization": f"Bearer {key.bearer_token}"}).json()
    (entry,) = [m for m in raw["modelSummaries"] if m["modelId"] == ALIAS]
    assert entry["basaltAliasOf"] == CHAT_MODEL


def test_usage_records_name_the_alias_beside_the_model_that_answered(server, make_client, create_key):
    key = create_key(f"alias-{uuid.uuid4().hex[:6]}")
    runtime = make_client("bedrock-runtime", key)
    via_alias = runtime.converse(modelId=ALIAS, messages=[{"role": "user", "content": [{"text": "Hi"}]}],
                                 inferenceConfig={"maxTokens": 2, "temperature": 0.0})
    direct = runtime.converse(modelId=CHAT_MODEL, messages=[{"role": "user", "content": [{"text": "Hi"}]}],
                              inferenceConfig={"maxTokens": 2, "temperature": 0.0})
    deadline = time.monotonic() + 15
    while True:
        groups = [g for g in server.cli_json("usage", "--json")["groups"] if g["key_name"] == key.name]
        if sum(g["invocations"] for g in groups) >= 2:
            break
        assert time.monotonic() < deadline, f"no usage groups for {key.name}: {groups}"
        time.sleep(0.5)
    by_alias = {g.get("model_alias"): g for g in groups}
    assert set(by_alias) == {ALIAS, None}, groups
    assert by_alias[ALIAS]["model_id"] == by_alias[None]["model_id"] == CHAT_MODEL, groups
    assert by_alias[ALIAS]["input_tokens"] == via_alias["usage"]["inputTokens"], (groups, via_alias)
    assert by_alias[None]["input_tokens"] == direct["usage"]["inputTokens"], (groups, direct)
