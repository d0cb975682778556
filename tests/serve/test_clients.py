"""The clients people use, unmodified, against a live server: openai (sync + async) and LangChain."""

import asyncio

import openai
import pytest
from langchain_openai import ChatOpenAI

from .conftest import API_KEY

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def oai(live_keyed):
    return openai.OpenAI(base_url=live_keyed.url + "/v1", api_key=API_KEY, max_retries=0)


def test_openai_sync_chat_and_stream(oai):
    out = oai.chat.completions.create(model="smollm2", messages=MESSAGES, temperature=0, max_tokens=12)
    text = out.choices[0].message.content
    assert "Paris" in text and out.usage.completion_tokens > 0
    stream = oai.chat.completions.create(model="smollm2", messages=MESSAGES, temperature=0, max_tokens=12,
                                         stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text


def test_openai_sync_completions_and_stream(oai):
    out = oai.completions.create(model="smollm2", prompt="The capital of France is", temperature=0, max_tokens=6,
                                 logprobs=2, echo=True)
    c = out.choices[0]
    assert c.text.startswith("The capital of France is") and c.logprobs.token_logprobs[0] is None
    stream = oai.completions.create(model="smollm2", prompt="The capital of France is", temperature=0,
                                    max_tokens=6, stream=True)
    assert "The capital of France is" + "".join(ch.choices[0].text for ch in stream) == c.text


def test_openai_errors_are_typed(live_keyed, oai):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=live_keyed.url + "/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="smollm2", messages=MESSAGES, n=1000)


def test_openai_async_chat_and_completions(live_keyed):
    async def main():
        client = openai.AsyncOpenAI(base_url=live_keyed.url + "/v1", api_key=API_KEY, max_retries=0)
        chat, comp = await asyncio.gather(
            client.chat.completions.create(model="smollm2", messages=MESSAGES, temperature=0, max_tokens=8),
            client.completions.create(model="smollm2", prompt="1, 2, 3,", temperature=0, max_tokens=6))
        stream = await client.chat.completions.create(model="smollm2", messages=MESSAGES, temperature=0,
                                                      max_tokens=8, stream=True)
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        models = await client.models.list()
        await client.close()
        return chat, comp, streamed, models

    chat, comp, streamed, models = asyncio.run(main())
    assert streamed == chat.choices[0].message.content and comp.choices[0].text
    assert [m.id for m in models.data] == ["smollm2", "all-MiniLM-L6-v2"]


def test_langchain_chat_openai_invoke_and_stream(live_keyed):
    llm = ChatOpenAI(base_url=live_keyed.url + "/v1", api_key=API_KEY, model="smollm2", temperature=0,
                     max_tokens=12, max_retries=0)
    answer = llm.invoke("What is the capital of France?")
    assert "Paris" in answer.content
    assert "".join(chunk.content for chunk in llm.stream("What is the capital of France?")) == answer.content
