"""Google Gemini as a remote provider (generateContent, streamGenerateContent,
batchEmbedContents), against `gemini_double.py`, which answers in Gemini's JSON, SSE
and error formats and refuses requests the API would refuse."""
import json

import openai
import pytest

from basalt_support import (PNG_1X1, collect_stream, converse_text, cosine, expect_client_error, image_msg,
                            inline_table, remote_embedding_toml, remote_model_toml, user_msg)
from conftest import runtime_for, serve_front
from gemini_double import API_KEY, DIMENSIONS, MAX_BATCH, GeminiDouble, vector768

CHAT = "google.gemini-2-flash-v1:0"
CHAT_BAD_KEY = "google.gemini-2-flash-bad-key-v1:0"
EMBED = "google.text-embedding-004-v1:0"
TOOLS = [{"toolSpec": {"name": name, "description": f"{name} of a city",
                       "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
                                                "required": ["city"]}}}} for name in ("weather", "population")]


@pytest.fixture(scope="module")
def double():
    d = GeminiDouble()
    yield d
    d.close()


@pytest.fixture(scope="module")
def front(double, tmp_path_factory, _hermetic_client_env):
    upstream = lambda model, env: "upstream = " + inline_table(  # noqa: E731
        api="gemini", base_url=double.base_url, model=model, api_key_env=env, timeout_secs=30, context_window=1000000)
    models = (
        remote_model_toml(CHAT, upstream("gemini-2.0-flash", "BASALT_TEST_GEMINI_KEY"),
            provider="Google", tools=True, images=True,
            extra=("routing = { retries = 0 }",))
        + remote_model_toml(CHAT_BAD_KEY, upstream("gemini-2.0-flash", "BASALT_TEST_GEMINI_BAD_KEY"),
            provider="Google")
        + remote_embedding_toml(EMBED, upstream("text-embedding-004", "BASALT_TEST_GEMINI_KEY"),
            DIMENSIONS, provider="Google"))
    yield from serve_front(tmp_path_factory, "gemini-front", models,
                           {"BASALT_TEST_GEMINI_KEY": API_KEY, "BASALT_TEST_GEMINI_BAD_KEY": "wrong"})


@pytest.fixture(scope="module")
def key(front):
    return front.cli_json("keys", "create", "--name", "gemini-tests", "--json")


@pytest.fixture(scope="module")
def rt(front, key):
    return runtime_for(front, key)


def test_converse_speaks_gemini(rt, double):
    r = rt.converse(modelId=CHAT, system=[{"text": "Be brief."}], messages=[user_msg("hello there")],
                    inferenceConfig={"maxTokens": 50, "temperature": 0.5, "stopSequences": ["zzz"]},
                    additionalModelRequestFields={"top_k": 20, "seed": 9})
    assert converse_text(r) == "You said: hello there" and r["stopReason"] == "end_turn"
    sent = double.last()
    assert sent["headers"].get("x-goog-api-key") == API_KEY
    body = sent["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hello there"}]}]
    g = body["generationConfig"]
    assert (g["maxOutputTokens"], g["topK"], g["seed"], g["stopSequences"]) == (50, 20, 9, ["zzz"])
    assert r["usage"]["outputTokens"] == 4


def test_max_tokens_and_stream(rt, double):
    r = rt.converse(modelId=CHAT, messages=[user_msg("one two three four")], inferenceConfig={"maxTokens": 3})
    assert (r["stopReason"], converse_text(r)) == ("max_tokens", "You said: one")
    resp = rt.converse_stream(modelId=CHAT, messages=[user_msg("stream this please")], inferenceConfig={"maxTokens": 50})
    text, stop, usage = collect_stream(resp)
    assert (text, stop, usage["outputTokens"]) == ("You said: stream this please", "end_turn", 5)
    assert double.last("streamGenerateContent")["query"] == {"alt": ["sse"]}


def test_a_stream_without_its_last_chunk_is_a_stream_error(rt):
    resp = rt.converse_stream(modelId=CHAT, messages=[user_msg("please fail midway now")],
                              inferenceConfig={"maxTokens": 50})
    with pytest.raises(Exception) as err:
        for _ in resp["stream"]:
            pass
    assert "modelStreamErrorException" in str(err.value) or "ModelStreamError" in type(err.value).__name__, err.value


def test_tool_round_trip_names_the_result_after_its_call(rt, double):
    r = rt.converse(modelId=CHAT, messages=[user_msg("How many live in Lyon? use the tool")],
                    toolConfig={"tools": TOOLS, "toolChoice": {"tool": {"name": "population"}}},
                    inferenceConfig={"maxTokens": 64})
    config = double.last()["body"]["toolConfig"]["functionCallingConfig"]
    assert config == {"mode": "ANY", "allowedFunctionNames": ["population"]}
    assert r["stopReason"] == "tool_use"
    call = next(b["toolUse"] for b in r["output"]["message"]["content"] if "toolUse" in b)
    assert call["name"] == "population" and call["input"] == {"city": "Paris"} and call["toolUseId"]
    follow = rt.converse(modelId=CHAT, toolConfig={"tools": TOOLS}, inferenceConfig={"maxTokens": 64}, messages=[
        user_msg("How many live in Lyon?"),
        {"role": "assistant", "content": [{"toolUse": call}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": call["toolUseId"], "content": [{"text": "522000"}]}}]},
    ])
    assert converse_text(follow).startswith("You said:"), follow
    contents = double.last()["body"]["contents"]
    assert contents[1] == {"role": "model", "parts": [{"functionCall": {"name": "population", "args": {"city": "Paris"}}}]}
    assert contents[2] == {"role": "user", "parts": [{"functionResponse": {"name": "population",
                                                                           "response": {"result": "522000"}}}]}


def test_a_tool_result_without_its_call_is_refused_before_sending(rt, double):
    before = len(double.requests)
    expect_client_error(lambda: rt.converse(modelId=CHAT, toolConfig={"tools": TOOLS}, messages=[
        {"role": "user", "content": [{"toolResult": {"toolUseId": "nope", "content": [{"text": "x"}]}}]}]),
        "ValidationException", 400, message_contains="toolUse")
    assert len(double.requests) == before


def test_embeddings_in_batches_of_100(front, key, double, rt):
    client = openai.OpenAI(base_url=f"{front.url}/v1", api_key=key["bearer_token"], max_retries=0)
    texts = [f"passage {i}" for i in range(MAX_BATCH + 3)]
    before = sum(1 for r in double.requests if r["path"].endswith(":batchEmbedContents"))
    e = client.embeddings.create(model=EMBED, input=texts)
    calls = [r for r in double.requests if r["path"].endswith(":batchEmbedContents")][before:]
    assert [len(c["body"]["requests"]) for c in calls] == [MAX_BATCH, 3]
    assert calls[0]["body"]["requests"][0] == {"model": "models/text-embedding-004",
                                                "content": {"parts": [{"text": "passage 0"}]},
                                                "taskType": "RETRIEVAL_DOCUMENT"}
    assert all(cosine(d.embedding, vector768(t)) > 0.999999 for d, t in zip(e.data, texts))
    assert e.usage.prompt_tokens > 0, "Gemini reports no token count: estimated, never zero"
    out = json.loads(rt.invoke_model(modelId=EMBED, body=json.dumps({"inputText": "abcdefgh"}))["body"].read())
    assert len(out["embedding"]) == DIMENSIONS and out["inputTextTokenCount"] == 2


@pytest.mark.parametrize("model,text,code,status", [
    (CHAT, "please raise 429", "ThrottlingException", 429),
    (CHAT, "please raise 503", "ServiceUnavailableException", 503),
    (CHAT_BAD_KEY, "hi", "AccessDeniedException", 403),
])
def test_gemini_errors_map_to_bedrock_errors(rt, model, text, code, status):
    expect_client_error(lambda: rt.converse(modelId=model, messages=[user_msg(text)]), code, status)


def test_images_reach_gemini_as_inline_data(rt, double):
    import base64
    rt.converse(modelId=CHAT, messages=[image_msg("Describe this")], inferenceConfig={"maxTokens": 40})
    parts = double.last()["body"]["contents"][-1]["parts"]
    assert parts[0] == {"text": "Describe this"} and parts[1]["inlineData"]["mimeType"] == "image/png"
    assert base64.b64decode(parts[1]["inlineData"]["data"]) == PNG_1X1
