"""bedrock-runtime CountTokens: must agree with what Converse / InvokeModel bill."""

import json

import pytest

from basalt_support import CHAT_MODEL, assistant_msg, chatml, user_msg

CASES = {
    "single-turn": (None, [user_msg("What is the capital of France?")]),
    "with-system": (
        [{"text": "You are a concise geography tutor."}],
        [user_msg("What is the capital of France?")],
    ),
    "multi-turn": (
        [{"text": "Be friendly."}],
        [
            user_msg("Hello, I'm planning a trip."),
            assistant_msg("How exciting! Where are you going?"),
            user_msg("To Portugal, in spring."),
        ],
    ),
}


def count(runtime, payload: dict) -> int:
    resp = runtime.count_tokens(modelId=CHAT_MODEL, input=payload)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    n = resp["inputTokens"]
    assert isinstance(n, int) and n > 0, f"inputTokens={n!r}"
    return n


@pytest.mark.parametrize("case", sorted(CASES))
def test_count_matches_converse_usage(runtime, case):
    system, messages = CASES[case]
    converse_input = {"messages": messages}
    if system:
        converse_input["system"] = system
    counted = count(runtime, {"converse": converse_input})

    kwargs = {"system": system} if system else {}
    resp = runtime.converse(
        modelId=CHAT_MODEL,
        messages=messages,
        inferenceConfig={"maxTokens": 1, "temperature": 0.0},
        **kwargs,
    )
    billed = resp["usage"]["inputTokens"]
    assert counted == billed, f"CountTokens says {counted}, Converse billed {billed} input tokens"


def test_count_grows_with_system_prompt(runtime):
    msgs = [user_msg("Hi")]
    plain = count(runtime, {"converse": {"messages": msgs, "system": [{"text": "Hi."}]}})
    longer = count(
        runtime,
        {
            "converse": {
                "messages": msgs,
                "system": [{"text": "You are a helpful assistant who explains things slowly "
                                    "and carefully, with many examples from everyday life."}],
            }
        },
    )
    assert longer > plain, (plain, longer)


@pytest.mark.parametrize(
    "prompt",
    [chatml("What is the capital of France?"), chatml("Hi", system="Answer in French.")],
    ids=["user-only", "with-system"],
)
def test_count_matches_invoke_prompt_tokens(runtime, prompt):
    body = {"prompt": prompt, "max_gen_len": 1, "temperature": 0.0}
    counted = count(runtime, {"invokeModel": {"body": json.dumps(body).encode()}})
    out = json.loads(
        runtime.invoke_model(
            modelId=CHAT_MODEL,
            body=json.dumps(body),
            contentType="application/json",
            accept="application/json",
        )["body"].read()
    )
    assert counted == out["prompt_token_count"], (
        f"CountTokens says {counted}, InvokeModel prompt_token_count is {out['prompt_token_count']}"
    )
