"""Cohere (v2 Chat and Embed) as a remote provider, against `cohere_double.py`, which
answers in Cohere's JSON, event-stream and error formats and refuses requests its
documented schema does not allow."""
import json

import openai
import pytest

from basalt_support import (PNG_1X1, collect_stream, collect_tool_stream, converse_text, cosine,
                            expect_client_error, image_msg, inline_table, remote_embedding_toml,
                            remote_model_toml, user_msg)
from cohere_double import API_KEY, DIMENSIONS, MAX_TEXTS, CohereDouble
from conftest import runtime_for, serve_front
from mistral_double import vector

CHAT = "cohere.command-r-v1:0"
CHAT_BAD_KEY = "cohere.command-r-bad-key-v1:0"
EMBED = "cohere.embed-english-v3-v1:0"
TOOLS = [{"toolSpec": {"name": name, "description": f"{name} of a city",
                       "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
                                                "required": ["city"]}}}} for name in ("weather", "population")]


@pytest.fixture(scope="module")
def double():
    d = CohereDouble()
    yield d
    d.close()


@pytest.fixture(scope="module")
def front(double, tmp_path_factory, _hermetic_client_env):
    upstream = lambda model, env: "upstream = " + inline_table(  # noqa: E731
        api="cohere", base_url=double.base_url, model=model, api_key_env=env, timeout_secs=30, context_window=128000)
    models = (
        remote_model_toml(CHAT, upstream("command-r-08-2024", "BASALT_TEST_COHERE_KEY"),
            provider="Cohere", tools=True, images=True,
            extra=("routing = { retries = 0 }",))
        + remote_model_toml(CHAT_BAD_KEY, upstream("command-r-08-2024", "BASALT_TEST_COHERE_BAD_KEY"),
            provider="Cohere")
        + remote_embedding_toml(EMBED, upstream("embed-english-v3.0", "BASALT_TEST_COHERE_KEY"),
            DIMENSIONS, provider="Cohere"))
    yield from serve_front(tmp_path_factory, "cohere-front", models,
                           {"BASALT_TEST_COHERE_KEY": API_KEY, "BASALT_TEST_COHERE_BAD_KEY": "wrong"})


@pytest.fixture(scope="module")
def key(front):
    return front.cli_json("keys", "create", "--name", "cohere-tests", "--json")


@pytest.fixture(scope="module")
def rt(front, key):
    return runtime_for(front, key)


def test_converse_speaks_cohere_and_reports_processed_tokens(rt, double):
    r = rt.converse(modelId=CHAT, system=[{"text": "Be brief."}], messages=[user_msg("hello there")],
                    inferenceConfig={"maxTokens": 50, "temperature": 0.3, "topP": 1.0, "stopSequences": ["zzz"]},
                    additionalModelRequestFields={"top_k": 40, "seed": 5})
    assert converse_text(r) == "You said: hello there" and r["stopReason"] == "end_turn"
    sent = double.last()
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (sent["p"], sent["k"], sent["seed"], sent["stop_sequences"]) == (0.99, 40, 5, ["zzz"]), sent
    assert "top_p" not in sent and "top_k" not in sent
    assert r["usage"]["outputTokens"] == 5, "the processed token count (`tokens`), not the billed one"


@pytest.mark.parametrize("text,max_tokens,stop,reason,answer", [
    ("one two three four", 3, None, "max_tokens", "You said: one"),
    ("alpha beta STOP gamma", 50, "STOP", "stop_sequence", "You said: alpha beta"),
])
def test_finish_reasons(rt, text, max_tokens, stop, reason, answer):
    config = {"maxTokens": max_tokens, **({"stopSequences": [stop]} if stop else {})}
    r = rt.converse(modelId=CHAT, messages=[user_msg(text)], inferenceConfig=config)
    assert (r["stopReason"], converse_text(r)) == (reason, answer)


def test_converse_stream_reads_cohere_events(rt):
    resp = rt.converse_stream(modelId=CHAT, messages=[user_msg("stream this please")], inferenceConfig={"maxTokens": 50})
    text, stop, usage = collect_stream(resp)
    assert (text, stop) == ("You said: stream this please", "end_turn")
    assert usage["outputTokens"] == 6


def test_a_stream_cut_before_message_end_is_a_stream_error(rt):
    resp = rt.converse_stream(modelId=CHAT, messages=[user_msg("please fail midway now")],
                              inferenceConfig={"maxTokens": 50})
    with pytest.raises(Exception) as err:
        for _ in resp["stream"]:
            pass
    assert "modelStreamErrorException" in str(err.value) or "ModelStreamError" in type(err.value).__name__, err.value


def test_tool_round_trip_and_a_named_tool_choice(rt, double):
    r = rt.converse(modelId=CHAT, messages=[user_msg("How many live in Lyon? use the tool")],
                    toolConfig={"tools": TOOLS, "toolChoice": {"tool": {"name": "population"}}},
                    inferenceConfig={"maxTokens": 64})
    sent = double.last()
    assert sent["tool_choice"] == "REQUIRED" and [t["function"]["name"] for t in sent["tools"]] == ["population"]
    assert r["stopReason"] == "tool_use"
    call = next(b["toolUse"] for b in r["output"]["message"]["content"] if "toolUse" in b)
    assert call["name"] == "population" and call["input"] == {"city": "Paris"}
    follow = rt.converse(modelId=CHAT, toolConfig={"tools": TOOLS}, inferenceConfig={"maxTokens": 64}, messages=[
        user_msg("How many live in Lyon?"),
        {"role": "assistant", "content": [{"toolUse": call}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": call["toolUseId"], "content": [{"text": "522000"}]}}]},
    ])
    assert converse_text(follow) == "You said: 522000"
    sent = double.last()
    assert "tool_choice" not in sent, "auto is Cohere's default"
    assert sent["messages"][1]["tool_calls"][0] == {"id": call["toolUseId"], "type": "function", "function": {
        "name": "population", "arguments": json.dumps(call["input"], separators=(",", ":"))}}
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": call["toolUseId"], "content": "522000"}


def test_streamed_tool_call(rt):
    resp = rt.converse_stream(modelId=CHAT, messages=[user_msg("Weather in Paris? use the tool")],
                              toolConfig={"tools": TOOLS, "toolChoice": {"any": {}}}, inferenceConfig={"maxTokens": 64})
    starts, inputs, stop = collect_tool_stream(resp)
    assert starts == ["weather"] and json.loads(inputs) == {"city": "Paris"} and stop == "tool_use"


def test_embeddings_in_batches_of_96(front, key, double):
    client = openai.OpenAI(base_url=f"{front.url}/v1", api_key=key["bearer_token"], max_retries=0)
    texts = [f"text number {i}" for i in range(MAX_TEXTS + 4)]
    before = sum(1 for r in double.requests if r["path"] == "/v2/embed")
    e = client.embeddings.create(model=EMBED, input=texts)
    calls = [r["body"] for r in double.requests if r["path"] == "/v2/embed"][before:]
    assert [len(c["texts"]) for c in calls] == [MAX_TEXTS, 4]
    assert calls[0]["input_type"] == "search_document" and calls[0]["embedding_types"] == ["float"]
    assert [d.index for d in e.data] == list(range(len(texts)))
    assert all(cosine(d.embedding, vector(t)) > 0.999999 for d, t in zip(e.data, texts))
    assert e.usage.prompt_tokens == 3 * len(texts), "Cohere's billed input tokens, summed over the calls"
    out = json.loads(front_invoke(front, key, EMBED, {"inputText": "a b"}))
    assert out["inputTextTokenCount"] == 2 and cosine(out["embedding"], vector("a b")) > 0.999999


def front_invoke(front, key, model, body):
    return runtime_for(front, key).invoke_model(modelId=model, body=json.dumps(body))["body"].read()


@pytest.mark.parametrize("model,text,code,status", [
    (CHAT, "please raise 429", "ThrottlingException", 429),
    (CHAT, "please raise 503", "ServiceUnavailableException", 503),
    (CHAT_BAD_KEY, "hi", "AccessDeniedException", 403),
])
def test_cohere_errors_map_to_bedrock_errors(rt, model, text, code, status):
    expect_client_error(lambda: rt.converse(modelId=model, messages=[user_msg(text)]), code, status)


def test_images_reach_cohere_as_image_url_parts(rt, double):
    import base64
    rt.converse(modelId=CHAT, messages=[image_msg("Describe this")], inferenceConfig={"maxTokens": 40})
    content = double.last()["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "Describe this"} and content[1]["type"] == "image_url"
    assert base64.b64decode(content[1]["image_url"]["url"].split(",", 1)[1]) == PNG_1X1


def test_a_model_without_image_input_refuses_images_before_sending(rt, double):
    before = len(double.requests)
    expect_client_error(lambda: rt.converse(modelId=CHAT_BAD_KEY, messages=[image_msg("Describe this")]),
                        "ValidationException", 400, message_contains="image")
    assert len(double.requests) == before
