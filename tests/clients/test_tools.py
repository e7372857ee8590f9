"""Tool use and structured output on the local model, through boto3 and openai.

The outputs come from a 135M-parameter model, so the tests never judge meaning: they
check that every tool call's input and every structured answer validates against its
JSON schema (the engine enforces it with a grammar), and that the wire shapes are right.
"""
import json

import jsonschema
import openai
import pytest

from basalt_support import CHAT_MODEL, expect_client_error, user_msg

SCHEMAS = {
    "get_weather": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
    "book_trip": {
        "type": "object",
        "properties": {
            "traveller": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                "required": ["name", "age"],
            },
            "stops": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
            "budget": {"type": "number"},
        },
        "required": ["traveller", "stops", "budget"],
    },
    "set_flags": {
        "type": "object",
        "properties": {"enabled": {"type": "boolean"}, "level": {"type": "integer"}},
        "required": ["enabled", "level"],
    },
}


def tool_spec(name):
    return {"toolSpec": {"name": name, "description": f"The {name} tool.", "inputSchema": {"json": SCHEMAS[name]}}}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_converse_any_tool_choice_returns_a_valid_tool_use(runtime, name):
    resp = runtime.converse(
        modelId=CHAT_MODEL,
        messages=[user_msg("Please use a tool for my request about Paris.")],
        inferenceConfig={"maxTokens": 160, "temperature": 0},
        toolConfig={"tools": [tool_spec(name)], "toolChoice": {"any": {}}},
    )
    assert resp["stopReason"] == "tool_use", resp
    blocks = resp["output"]["message"]["content"]
    uses = [b["toolUse"] for b in blocks if "toolUse" in b]
    assert len(uses) == 1, f"expected one toolUse block: {blocks}"
    use = uses[0]
    assert use["name"] == name
    assert use["toolUseId"].startswith("tooluse_")
    jsonschema.validate(use["input"], SCHEMAS[name])


def test_named_tool_choice_picks_that_tool_and_a_tool_result_turn_works(runtime):
    tools = [tool_spec("get_weather"), tool_spec("set_flags")]
    first = runtime.converse(
        modelId=CHAT_MODEL,
        messages=[user_msg("What is the weather in Oslo?")],
        inferenceConfig={"maxTokens": 96, "temperature": 0},
        toolConfig={"tools": tools, "toolChoice": {"tool": {"name": "set_flags"}}},
    )
    use = next(b["toolUse"] for b in first["output"]["message"]["content"] if "toolUse" in b)
    assert use["name"] == "set_flags", use
    jsonschema.validate(use["input"], SCHEMAS["set_flags"])
    follow_up = runtime.converse(
        modelId=CHAT_MODEL,
        messages=[
            user_msg("What is the weather in Oslo?"),
            {"role": "assistant", "content": [{"toolUse": use}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"], "content": [{"json": {"ok": True}}], "status": "success"}}]},
        ],
        inferenceConfig={"maxTokens": 24, "temperature": 0},
        toolConfig={"tools": tools},
    )
    assert follow_up["stopReason"] in ("end_turn", "max_tokens", "tool_use"), follow_up["stopReason"]
    assert follow_up["usage"]["inputTokens"] > first["usage"]["inputTokens"], "the tool turn was not part of the prompt"


def test_converse_stream_sends_tool_use_blocks(runtime):
    resp = runtime.converse_stream(
        modelId=CHAT_MODEL,
        messages=[user_msg("Weather in Rome, please.")],
        inferenceConfig={"maxTokens": 96, "temperature": 0},
        toolConfig={"tools": [tool_spec("get_weather")], "toolChoice": {"any": {}}},
    )
    events = list(resp["stream"])
    starts = [e["contentBlockStart"] for e in events if "contentBlockStart" in e]
    assert len(starts) == 1 and starts[0]["start"]["toolUse"]["name"] == "get_weather", events
    index = starts[0]["contentBlockIndex"]
    partial = "".join(
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "contentBlockDelta" in e and e["contentBlockDelta"]["contentBlockIndex"] == index
    )
    jsonschema.validate(json.loads(partial), SCHEMAS["get_weather"])
    stop = next(e["messageStop"] for e in events if "messageStop" in e)
    assert stop["stopReason"] == "tool_use"


def test_a_text_answer_with_tools_offered_streams_as_it_is_generated(runtime):
    """Under `auto`, output whose first visible character is not `{` cannot become a
    call (the tool grammar only opens an answer), so it streams token by token."""
    args = dict(modelId=CHAT_MODEL, messages=[user_msg("Write one sentence about the sea.")],
                inferenceConfig={"maxTokens": 40, "temperature": 0},
                toolConfig={"tools": [tool_spec("get_weather")]})
    whole = runtime.converse(**args)
    assert whole["stopReason"] in ("end_turn", "max_tokens"), "the model answers this one in text"
    events = list(runtime.converse_stream(**args)["stream"])
    texts = [e["contentBlockDelta"]["delta"]["text"] for e in events
             if "contentBlockDelta" in e and "text" in e["contentBlockDelta"]["delta"]]
    assert len(texts) > 3, f"the text came in {len(texts)} delta(s), not as it was generated"
    assert "".join(texts) == whole["output"]["message"]["content"][0]["text"]
    assert not any("toolUse" in e.get("contentBlockStart", {}).get("start", {}) for e in events)


def test_bad_tool_definitions_are_validation_errors(runtime, converse_ok):
    base = dict(modelId=CHAT_MODEL, messages=[user_msg("Hi")], inferenceConfig={"maxTokens": 8})
    expect_client_error(
        lambda: runtime.converse(**base, toolConfig={"tools": [tool_spec("get_weather")], "toolChoice": {"tool": {"name": "missing"}}}),
        "ValidationException", 400,
    )
    bad = {"toolSpec": {"name": "x", "inputSchema": {"json": {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}}}
    expect_client_error(lambda: runtime.converse(**base, toolConfig={"tools": [bad]}), "ValidationException", 400)
    converse_ok()


STRUCTURED = [
    {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]},
    {"type": "object", "properties": {"colors": {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]}, "minItems": 2, "maxItems": 4}}, "required": ["colors"]},
    {"type": "object", "properties": {"ok": {"type": "boolean"}, "score": {"type": "number"}, "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 2}}, "required": ["ok", "score", "tags"]},
]


@pytest.mark.parametrize("schema", STRUCTURED)
def test_converse_structured_output_validates(runtime, schema):
    resp = runtime.converse(
        modelId=CHAT_MODEL,
        messages=[user_msg("Describe a person as JSON.")],
        inferenceConfig={"maxTokens": 160, "temperature": 0},
        additionalModelRequestFields={"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}},
    )
    # Unbounded strings could run past maxTokens; these schemas bound them, so the
    # answer must be complete.
    assert resp["stopReason"] == "end_turn", resp
    text = resp["output"]["message"]["content"][0]["text"]
    jsonschema.validate(json.loads(text), schema)


def test_converse_output_config_structured_output_validates(runtime):
    schema = STRUCTURED[0]
    resp = runtime.converse(
        modelId=CHAT_MODEL,
        messages=[user_msg("Give me a person.")],
        inferenceConfig={"maxTokens": 96, "temperature": 0},
        outputConfig={"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "person"}}}},
    )
    jsonschema.validate(json.loads(resp["output"]["message"]["content"][0]["text"]), schema)


def test_invalid_response_schema_is_a_validation_error(runtime, converse_ok):
    expect_client_error(
        lambda: runtime.converse(
            modelId=CHAT_MODEL,
            messages=[user_msg("Hi")],
            inferenceConfig={"maxTokens": 8},
            additionalModelRequestFields={"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {"a": {"$ref": "#/missing"}}}}}},
        ),
        "ValidationException", 400,
    )
    converse_ok()


def openai_tool(name):
    return {"type": "function", "function": {"name": name, "description": f"The {name} tool.", "parameters": SCHEMAS[name]}}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_openai_required_tool_choice_returns_valid_tool_calls(oai, name):
    resp = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Use the tool."}],
        tools=[openai_tool(name)],
        tool_choice="required",
        max_tokens=160,
        temperature=0,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == name
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[name])
    follow_up = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=[
            {"role": "user", "content": "Use the tool."},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "done"},
        ],
        tools=[openai_tool(name)],
        max_tokens=16,
        temperature=0,
    )
    assert follow_up.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_openai_streamed_tool_call(oai):
    stream = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Weather in Lima?"}],
        tools=[openai_tool("get_weather")],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=96,
        temperature=0,
        stream=True,
    )
    calls, finish = [], None
    for chunk in stream:
        for c in chunk.choices:
            calls.extend(c.delta.tool_calls or [])
            finish = c.finish_reason or finish
    assert finish == "tool_calls"
    assert calls and calls[0].function.name == "get_weather"
    jsonschema.validate(json.loads(calls[0].function.arguments), SCHEMAS["get_weather"])


@pytest.mark.parametrize("schema", STRUCTURED)
def test_openai_json_schema_response_format_validates(oai, schema):
    resp = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Answer in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
        max_tokens=160,
        temperature=0,
    )
    jsonschema.validate(json.loads(resp.choices[0].message.content), schema)


def test_openai_invalid_schema_is_a_bad_request(oai):
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"$ref": "#/missing"}}}}},
            max_tokens=8,
        )
