"""Constrained output and tools through the server, with the official openai client."""

import json
import re

import jsonschema
import openai
import pytest

from .conftest import API_KEY

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer"},
                                           "city": {"enum": ["Paris", "London", "Rome"]}},
          "required": ["name", "age", "city"]}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"]}}}


@pytest.fixture(scope="module")
def oai(live_keyed):
    return openai.OpenAI(base_url=live_keyed.url + "/v1", api_key=API_KEY, max_retries=0)


def test_response_format_json_schema_validates(oai):
    out = oai.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=60,
        messages=[{"role": "user", "content": "Describe a person living in Rome as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
    jsonschema.validate(json.loads(out.choices[0].message.content), PERSON)


def test_json_object_and_guided_choice_and_regex(oai):
    out = oai.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=120, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": 'Reply with a JSON object with one key "name": a name for a cat.'}])
    assert out.choices[0].finish_reason == "stop", out.choices[0].message.content
    assert isinstance(json.loads(out.choices[0].message.content), dict)
    out = oai.chat.completions.create(model="smollm2", temperature=0, max_tokens=5,
                                      messages=[{"role": "user", "content": "Is fire hot?"}],
                                      extra_body={"guided_choice": ["yes", "no"]})
    assert out.choices[0].message.content in ("yes", "no")
    out = oai.completions.create(model="smollm2", prompt="The year was", temperature=0, max_tokens=8,
                                 extra_body={"guided_regex": r" [0-9]{4}"})
    assert re.fullmatch(r" [0-9]{4}", out.choices[0].text)


@pytest.mark.parametrize("extra", [
    {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "unicorn"}}}},
    {"extra_body": {"guided_regex": "(unclosed"}},
    {"extra_body": {"guided_choice": []}},
    {"extra_body": {"guided_regex": "a", "guided_choice": ["a"]}},
])
def test_invalid_constraints_are_400(oai, extra):
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="smollm2", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                                    **extra)


def test_forced_tool_call_is_parsed_into_tool_calls(oai):
    out = oai.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=60, tools=[WEATHER], tool_choice="required",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    stream = oai.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=60, tools=[WEATHER], stream=True,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    chunks = list(stream)
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == json.loads(call.function.arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert not "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
