"""Bad requests get Bedrock-shaped errors, and the server keeps serving afterwards.

Requests boto3 refuses to build (malformed JSON, wrong types, maxTokens 0,
huge bodies) are sent as raw HTTP with bearer auth.
"""

import json

import pytest

from basalt_support import (
    CHAT_MODEL,
    EMBED_MODEL,
    EOL_MODEL,
    UNKNOWN_MODEL,
    assert_bedrock_error,
    assistant_msg,
    chatml,
    expect_client_error,
    model_path,
    user_msg,
)

CONVERSE = model_path(CHAT_MODEL, "converse")
REPLACEMENT = CHAT_MODEL


def _body(**overrides) -> bytes:
    body = {"messages": [user_msg("Hi")], "inferenceConfig": {"maxTokens": 2}}
    body.update(overrides)
    return json.dumps(body).encode()


# ---------------------------------------------------------------- raw HTTP


def test_malformed_json(raw_post, raw_converse_ok):
    r = raw_post(CONVERSE, b"{not json")
    assert_bedrock_error(r, "ValidationException", 400)
    raw_converse_ok()


@pytest.mark.parametrize(
    "body",
    [
        _body(inferenceConfig={"maxTokens": "ten"}),
        _body(messages="hello"),
        _body(inferenceConfig={"maxTokens": 2, "temperature": "hot"}),
    ],
    ids=["maxTokens-string", "messages-string", "temperature-string"],
)
def test_wrong_field_type(raw_post, raw_converse_ok, body):
    r = raw_post(CONVERSE, body)
    assert_bedrock_error(r, "ValidationException", 400)
    raw_converse_ok()


def test_unknown_content_block_member(raw_post, raw_converse_ok):
    body = json.dumps({"messages": [{"role": "user", "content": [{"bogus": {}}]}]}).encode()
    r = raw_post(CONVERSE, body)
    assert_bedrock_error(r, "ValidationException", 400)
    raw_converse_ok()


def test_max_tokens_zero(raw_post, raw_converse_ok):
    r = raw_post(CONVERSE, _body(inferenceConfig={"maxTokens": 0}))
    assert_bedrock_error(r, "ValidationException", 400)
    raw_converse_ok()


def test_ten_megabyte_body(raw_post, raw_converse_ok):
    huge = "a " * (5 * 1024 * 1024)  # 10 MiB of text inside valid JSON
    body = json.dumps({"messages": [user_msg(huge)], "inferenceConfig": {"maxTokens": 2}}).encode()
    assert len(body) > 10 * 1024 * 1024
    r = raw_post(CONVERSE, body)
    assert r.status != 413, "oversized body must be a Bedrock 400 ValidationException, not 413"
    assert_bedrock_error(r, "ValidationException", 400)
    raw_converse_ok()


# ---------------------------------------------------------------- through boto3


def test_empty_messages(runtime, converse_ok):
    expect_client_error(
        lambda: runtime.converse(modelId=CHAT_MODEL, messages=[], inferenceConfig={"maxTokens": 2}),
        "ValidationException",
        400,
    )
    converse_ok()


def test_first_message_from_assistant(runtime, converse_ok):
    expect_client_error(
        lambda: runtime.converse(
            modelId=CHAT_MODEL,
            messages=[assistant_msg("Hello!"), user_msg("Hi")],
            inferenceConfig={"maxTokens": 2},
        ),
        "ValidationException",
        400,
    )
    converse_ok()


def test_max_tokens_too_large(runtime, converse_ok):
    expect_client_error(
        lambda: runtime.converse(
            modelId=CHAT_MODEL, messages=[user_msg("Hi")], inferenceConfig={"maxTokens": 1_000_000}
        ),
        "ValidationException",
        400,
    )
    converse_ok()


def test_temperature_out_of_range(runtime, converse_ok):
    # botocore checks only the minimum (0); the 0..1 maximum is the server's job.
    expect_client_error(
        lambda: runtime.converse(
            modelId=CHAT_MODEL,
            messages=[user_msg("Hi")],
            inferenceConfig={"maxTokens": 2, "temperature": 1.5},
        ),
        "ValidationException",
        400,
    )
    converse_ok()


def test_unknown_model_converse(runtime, converse_ok):
    expect_client_error(
        lambda: runtime.converse(
            modelId=UNKNOWN_MODEL, messages=[user_msg("Hi")], inferenceConfig={"maxTokens": 2}
        ),
        "ResourceNotFoundException",
        404,
    )
    converse_ok()


def test_unknown_model_invoke(runtime, converse_ok):
    expect_client_error(
        lambda: runtime.invoke_model(
            modelId=UNKNOWN_MODEL,
            body=json.dumps({"prompt": chatml("Hi"), "max_gen_len": 2}),
            contentType="application/json",
            accept="application/json",
        ),
        "ResourceNotFoundException",
        404,
    )
    converse_ok()


def test_eol_model_converse(runtime, converse_ok):
    expect_client_error(
        lambda: runtime.converse(
            modelId=EOL_MODEL, messages=[user_msg("Hi")], inferenceConfig={"maxTokens": 2}
        ),
        "ValidationException",
        400,
        message_contains=REPLACEMENT,
    )
    converse_ok()


def test_eol_model_invoke(runtime, converse_ok):
    expect_client_error(
        lambda: runtime.invoke_model(
            modelId=EOL_MODEL,
            body=json.dumps({"prompt": chatml("Hi"), "max_gen_len": 2}),
            contentType="application/json",
            accept="application/json",
        ),
        "ValidationException",
        400,
        message_contains=REPLACEMENT,
    )
    converse_ok()


def test_invoke_body_not_json(runtime, converse_ok):
    expect_client_error(
        lambda: runtime.invoke_model(
            modelId=CHAT_MODEL, body=b"{not json", contentType="application/json"
        ),
        "ValidationException",
        400,
    )
    converse_ok()


def test_invoke_chat_without_prompt(runtime, converse_ok):
    expect_client_error(
        lambda: runtime.invoke_model(
            modelId=CHAT_MODEL,
            body=json.dumps({"max_gen_len": 2}),
            contentType="application/json",
        ),
        "ValidationException",
        400,
    )
    converse_ok()


def test_invoke_embedding_without_input_text(runtime, converse_ok):
    expect_client_error(
        lambda: runtime.invoke_model(
            modelId=EMBED_MODEL,
            body=json.dumps({"dimensions": 384, "normalize": True}),
            contentType="application/json",
        ),
        "ValidationException",
        400,
    )
    converse_ok()


def test_images_on_a_text_only_model_are_refused_and_nothing_is_lost(runtime, raw_post, converse_ok):
    from basalt_support import image_msg
    expect_client_error(lambda: runtime.converse(modelId=CHAT_MODEL, messages=[image_msg("What is this?")]),
                        "ValidationException", 400, message_contains="does not accept image")
    path = f"/model/{CHAT_MODEL.replace(':', '%3A')}/converse"
    body = b'{"messages":[{"role":"user","content":[{"image":{"format":"png","source":{"bytes":"!!"}}}]}]}'
    assert_bedrock_error(raw_post(path, body), "ValidationException", 400)
    converse_ok()
