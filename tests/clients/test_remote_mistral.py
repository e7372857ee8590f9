"""Mistral as a remote provider (chat completions and embeddings), against
`mistral_double.py`, which answers in Mistral's JSON, SSE and error formats and refuses
requests its documented schema does not allow (OpenAI-only fields, tool-call IDs that
are not nine letters and digits, tool results without their call)."""
import json

import openai
import pytest

from basalt_support import (PNG_1X1, collect_stream, converse_text, cosine, expect_client_error, image_msg,
                            inline_table, remote_embedding_toml, remote_model_toml, user_msg)
from conftest import runtime_for, serve_front
from mistral_double import API_KEY, DIMENSIONS, MistralDouble, vector

CHAT = "mistral.mistral-small-v1:0"
CHAT_BAD_KEY = "mistral.mistral-small-bad-key-v1:0"
EMBED = "mistral.mistral-embed-v1:0"
TOOLS = {"tools": [{"toolSpec": {"name": "weather", "description": "Current weather in a city",
                                 "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}}]}


@pytest.fixture(scope="module")
def double():
    d = MistralDouble()
    yield d
    d.close()


@pytest.fixture(scope="module")
def front(double, tmp_path_factory, _hermetic_client_env):
    upstream = lambda model, env: "upstream = " + inline_table(  # noqa: E731
        api="mistral", base_url=double.base_url, model=model, api_key_env=env, timeout_secs=30, context_window=32000)
    models = (
        remote_model_toml(CHAT, upstream("mistral-small-latest", "BASALT_TEST_MISTRAL_KEY"),
            provider="Mistral AI", tools=True, images=True,
            extra=("routing = { retries = 0 }",))
        + remote_model_toml(CHAT_BAD_KEY, upstream("mistral-small-latest", "BASALT_TEST_MISTRAL_BAD_KEY"),
            provider="Mistral AI")
        + remote_embedding_toml(EMBED, upstream("mistral-embed", "BASALT_TEST_MISTRAL_KEY"), DIMENSIONS,
            provider="Mistral AI"))
    yield from serve_front(tmp_path_factory, "mistral-front", models,
                           {"BASALT_TEST_MISTRAL_KEY": API_KEY, "BASALT_TEST_MISTRAL_BAD_KEY": "wrong"})


@pytest.fixture(scope="module")
def key(front):
    return front.cli_json("keys", "create", "--name", "mistral-tests", "--json")


@pytest.fixture(scope="module")
def rt(front, key):
    return runtime_for(front, key)


def test_converse_speaks_mistrals_request_format(rt, double):
    r = rt.converse(modelId=CHAT, system=[{"text": "Be brief."}], messages=[user_msg("hello there")],
                    inferenceConfig={"maxTokens": 50, "temperature": 0.2, "stopSequences": ["zzz"]},
                    additionalModelRequestFields={"seed": 11})
    assert converse_text(r) == "You said: hello there"
    assert r["stopReason"] == "end_turn"
    sent = double.last()
    assert sent["random_seed"] == 11 and "seed" not in sent, sent
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["stop"] == ["zzz"] and sent["max_tokens"] == 50
    assert r["usage"]["outputTokens"] == 4 and r["usage"]["inputTokens"] > 0


def test_max_tokens_maps_to_length(rt):
    r = rt.converse(modelId=CHAT, messages=[user_msg("one two three four five")], inferenceConfig={"maxTokens": 3})
    assert r["stopReason"] == "max_tokens" and converse_text(r) == "You said: one"


def test_converse_stream_relays_chunks_and_usage_without_stream_options(rt, double):
    resp = rt.converse_stream(modelId=CHAT, messages=[user_msg("stream this please")],
                              inferenceConfig={"maxTokens": 50})
    text, stop, usage = collect_stream(resp)
    assert text == "You said: stream this please" and stop == "end_turn"
    assert usage["outputTokens"] == 5
    sent = double.last()
    assert sent["stream"] is True and "stream_options" not in sent


def test_a_cut_stream_ends_with_a_model_stream_error(rt):
    resp = rt.converse_stream(modelId=CHAT, messages=[user_msg("please fail midway now")],
                              inferenceConfig={"maxTokens": 50})
    with pytest.raises(Exception) as err:
        for _ in resp["stream"]:
            pass
    assert "modelStreamErrorException" in str(err.value) or "ModelStreamError" in type(err.value).__name__, err.value


def test_tool_use_round_trip_with_bedrock_style_ids(rt, double):
    r = rt.converse(modelId=CHAT, messages=[user_msg("Weather in Paris? use the tool")],
                    toolConfig={**TOOLS, "toolChoice": {"any": {}}}, inferenceConfig={"maxTokens": 64})
    assert r["stopReason"] == "tool_use"
    assert double.last()["tool_choice"] == "any"
    call = next(b["toolUse"] for b in r["output"]["message"]["content"] if "toolUse" in b)
    assert call["name"] == "weather" and call["input"] == {"city": "Paris"}
    assert len(call["toolUseId"]) == 9, "Mistral's own call ID comes back as the toolUseId"
    # A client that invents its own (Bedrock-style) IDs: they reach Mistral as nine
    # letters and digits, the same for the call and its result, or the double refuses.
    own_id = "tooluse_Xq3T9vLm2RwA8bYc"
    follow = rt.converse(modelId=CHAT, toolConfig=TOOLS, inferenceConfig={"maxTokens": 64}, messages=[
        user_msg("Weather in Paris?"),
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": own_id, "name": "weather",
                                                       "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": own_id, "content": [{"text": "sunny, 21C"}]}}]},
    ])
    assert converse_text(follow).startswith("You said: sunny"), follow
    sent = double.last()["messages"]
    sent_id = sent[1]["tool_calls"][0]["id"]
    assert len(sent_id) == 9 and sent_id.isalnum() and sent[2] == {
        "role": "tool", "tool_call_id": sent_id, "content": "sunny, 21C"}


def test_openai_sdk_chat_and_embeddings_through_mistral(front, key):
    client = openai.OpenAI(base_url=f"{front.url}/v1", api_key=key["bearer_token"], max_retries=0)
    r = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=20)
    assert r.choices[0].message.content == "You said: hi"
    texts = ["first text here", "second"]
    e = client.embeddings.create(model=EMBED, input=texts)
    assert [len(d.embedding) for d in e.data] == [DIMENSIONS, DIMENSIONS]
    for d, t in zip(e.data, texts):
        assert cosine(d.embedding, vector(t)) > 0.999999
    assert e.usage.prompt_tokens == 4, "Mistral's own token count"


def test_invoke_model_titan_body_on_mistral_embed(rt, double):
    out = json.loads(rt.invoke_model(modelId=EMBED, body=json.dumps({"inputText": "a b c"}))["body"].read())
    assert cosine(out["embedding"], vector("a b c")) > 0.999999 and out["inputTextTokenCount"] == 3
    assert double.last("/v1/embeddings") == {"model": "mistral-embed", "input": ["a b c"]}


@pytest.mark.parametrize("text,code,status", [
    ("please raise 429", "ThrottlingException", 429),
    ("please raise 503", "ServiceUnavailableException", 503),
])
def test_mistral_errors_map_to_bedrock_errors(rt, text, code, status):
    expect_client_error(lambda: rt.converse(modelId=CHAT, messages=[user_msg(text)]), code, status)


def test_a_refused_key_is_access_denied_and_top_k_is_refused_before_sending(rt, double):
    expect_client_error(lambda: rt.converse(modelId=CHAT_BAD_KEY, messages=[user_msg("hi")]),
                        "AccessDeniedException", 403)
    before = len(double.requests)
    expect_client_error(lambda: rt.converse(modelId=CHAT, messages=[user_msg("hi")],
                                            additionalModelRequestFields={"top_k": 5}),
                        "ValidationException", 400, message_contains="top_k")
    assert len(double.requests) == before, "a request Mistral cannot take is not sent"


def test_images_reach_mistral_as_data_url_chunks(rt, double, front, key):
    import base64
    rt.converse(modelId=CHAT, messages=[image_msg("Describe this")], inferenceConfig={"maxTokens": 40})
    content = double.last()["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "Describe this"}
    url = content[1]["image_url"]["url"]
    assert content[1]["type"] == "image_url" and url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == PNG_1X1
    client = openai.OpenAI(base_url=f"{front.url}/v1", api_key=key["bearer_token"], max_retries=0)
    data_url = "data:image/png;base64," + base64.b64encode(PNG_1X1).decode()
    client.chat.completions.create(model=CHAT, max_tokens=20, messages=[{"role": "user", "content": [
        {"type": "text", "text": "and this?"}, {"type": "image_url", "image_url": {"url": data_url}}]}])
    assert double.last()["messages"][-1]["content"][1]["image_url"]["url"] == data_url
    with pytest.raises(openai.BadRequestError, match="data: URL"):
        client.chat.completions.create(model=CHAT, max_tokens=20, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
