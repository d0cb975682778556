"""structured(): the grammar guarantees the shape, pydantic the rest, with no retry loop."""

import enum
from typing import Literal, Optional

import pytest
from pydantic import BaseModel, Field

from llmkit.agents.llm import EngineChat, ScriptedChat
from llmkit.agents.structured import StructuredOutputError, structured
from llmkit.agents.errors import AgentError


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


class Pet(BaseModel):
    kind: Literal["cat", "dog"]
    legs: int


class Person(BaseModel):
    name: str = Field(max_length=12)
    age: int
    mood: Mood
    pets: list[Pet] = Field(max_length=2)
    nickname: Optional[str] = None


def test_random_model_yields_a_valid_instance(random_lm):
    """A random model only writes noise; under the grammar the noise is a valid Person."""
    llm = EngineChat(random_lm, repetition_penalty=1.0)
    p = structured(llm, Person, "Invent a person.", max_tokens=1200)
    assert isinstance(p, Person) and isinstance(p.mood, Mood) and len(p.name) <= 12
    assert all(pet.kind in ("cat", "dog") for pet in p.pets)


def test_one_call_and_the_schema_in_the_prompt():
    llm = ScriptedChat(['{"name": "Ana", "age": 31, "mood": "happy", "pets": [{"kind": "cat", "legs": 4}]}'])
    p = structured(llm, Person, "Describe Ana.")
    assert p == Person(name="Ana", age=31, mood=Mood.HAPPY, pets=[Pet(kind="cat", legs=4)])
    assert len(llm.calls) == 1 and llm.calls[0]["regex"]
    assert '"mood"' in llm.calls[0]["messages"][0]["content"]


def test_bounds_the_grammar_cannot_count_are_typed_errors_not_retries():
    class Score(BaseModel):
        value: int = Field(ge=0, le=10)

    llm = ScriptedChat(['{"value": 42}', '{"value": 5}'])
    with pytest.raises(StructuredOutputError, match="Score.value"):
        structured(llm, Score, "Rate it.")
    assert len(llm.calls) == 1  # no second attempt
    with pytest.raises(AgentError, match="pydantic model class"):
        structured(llm, dict, "x")


def test_smollm2_structured_city(smollm2):
    class City(BaseModel):
        name: str = Field(max_length=40)
        country: str = Field(max_length=40)

    city = structured(EngineChat(smollm2), City, "Paris is the capital of France. Give its name and country.",
                      max_tokens=64)
    assert isinstance(city, City) and city.name and city.country
