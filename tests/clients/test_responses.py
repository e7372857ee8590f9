"""OpenAI's Responses API through the `openai` SDK's `responses` client (pinned) and the
OpenAI Agents SDK (`openai-agents`, pinned) running a one-tool agent: text, instructions,
function tools and their outputs, structured output, streaming events, stored responses
with previous_response_id, retrieve / delete / input_items, and errors."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from basalt_support import CHAT_MODEL

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_text_with_instructions_and_usage(oai):
    r = oai.responses.create(model=CHAT_MODEL, instructions="You are terse.", input="Name a color.",
                             max_output_tokens=12, temperature=0)
    assert r.object == "response" and r.id.startswith("resp_") and r.model == CHAT_MODEL
    assert r.status in ("completed", "incomplete")
    assert r.output_text.strip(), r
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 12
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_max_output_tokens_makes_it_incomplete(oai):
    r = oai.responses.create(model=CHAT_MODEL, input="Write a long story about a knight.",
                             max_output_tokens=3, temperature=0, store=False)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3


def test_function_call_then_its_output(oai):
    r = oai.responses.create(model=CHAT_MODEL, input="What's the weather in Oslo?", tools=[WEATHER],
                             tool_choice="required", temperature=0, max_output_tokens=100)
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    args = json.loads(calls[0].arguments)
    assert isinstance(args.get("city"), str)
    follow = oai.responses.create(
        model=CHAT_MODEL, tools=[WEATHER], temperature=0, max_output_tokens=30,
        input=[{"role": "user", "content": "What's the weather in Oslo?"},
               {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
               {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C"}])
    assert follow.output and follow.status in ("completed", "incomplete")


def test_structured_output(oai):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = oai.responses.create(model=CHAT_MODEL, input="Invent a person.", temperature=0, max_output_tokens=60,
                             text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}})
    data = json.loads(r.output_text)
    assert isinstance(data["name"], str) and isinstance(data["age"], int), data


def test_stored_response_continues_and_can_be_read_and_deleted(oai, make_openai, create_key):
    first = oai.responses.create(model=CHAT_MODEL, input="My name is Astrid. Say hello.",
                                 temperature=0, max_output_tokens=16)
    again = oai.responses.retrieve(first.id)
    assert again.id == first.id and again.output_text == first.output_text
    items = oai.responses.input_items.list(first.id)
    texts = [c.text for i in items.data for c in getattr(i, "content", []) if hasattr(c, "text")]
    assert any("Astrid" in t for t in texts), items
    second = oai.responses.create(model=CHAT_MODEL, input="What is my name?", previous_response_id=first.id,
                                  temperature=0, max_output_tokens=16)
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens, \
        "the second turn's prompt holds the first turn's conversation"
    later = oai.responses.input_items.list(second.id, order="asc")
    assert len(later.data) >= 3, "previous input, previous output and the new input"
    # Another key cannot see it.
    other = make_openai(create_key("responses-other").bearer_token)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model=CHAT_MODEL, input="x", previous_response_id=first.id, max_output_tokens=4)
    deleted = oai.responses.delete(first.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(first.id)


def test_store_false_keeps_nothing(oai):
    r = oai.responses.create(model=CHAT_MODEL, input="Hi", store=False, max_output_tokens=4)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(r.id)


def test_streaming_events(oai):
    kinds, deltas, final = [], [], None
    with oai.responses.stream(model=CHAT_MODEL, input="Count to five.", max_output_tokens=16, temperature=0) as s:
        for event in s:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type in ("response.completed", "response.incomplete"):
                # As on OpenAI: an answer cut at max_output_tokens ends with
                # response.incomplete (the SDK's get_final_response wants completed).
                final = event.response
    assert kinds[:2] == ["response.created", "response.in_progress"], kinds
    assert kinds[-1] in ("response.completed", "response.incomplete") and final is not None, kinds
    assert len(deltas) > 1 and "".join(deltas) == final.output_text
    assert final.usage.output_tokens > 0
    assert oai.responses.retrieve(final.id).output_text == final.output_text, "a streamed response is stored too"


def test_streaming_function_call(oai):
    with oai.responses.stream(model=CHAT_MODEL, input="Weather in Rome?", tools=[WEATHER],
                              tool_choice="required", max_output_tokens=100, temperature=0) as s:
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert "response.function_call_arguments.done" in kinds, kinds
    call = [o for o in final.output if o.type == "function_call"][0]
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)


def test_errors(oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=CHAT_MODEL, input="x", tools=[{"type": "web_search"}])
    assert "only function tools" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=CHAT_MODEL, input="x", background=True)
    assert "background" in str(e.value)
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="no.such-model-v1:0", input="x")
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model=CHAT_MODEL, input="x", previous_response_id="resp_nope")
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model=CHAT_MODEL, input=[{"type": "item_reference", "id": "x"}])


def test_openai_agents_sdk_runs_a_one_tool_agent(server, key):
    from agents import (Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool,
                        set_tracing_disabled)

    set_tracing_disabled(True)
    asked = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        asked.append(city)
        return f"It is sunny in {city}."

    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=key.bearer_token, max_retries=0)
    agent = Agent(
        name="weather",
        instructions="Answer weather questions with the get_weather tool.",
        model=OpenAIResponsesModel(model=CHAT_MODEL, openai_client=client),
        model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=100),
        tools=[get_weather],
        tool_use_behavior="stop_on_first_tool",
    )
    result = asyncio.run(Runner.run(agent, "What's the weather in Paris?"))
    assert asked, "the agent called the tool through Basalt"
    assert result.final_output == f"It is sunny in {asked[0]}."
