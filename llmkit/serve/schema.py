"""OpenAI request bodies as pydantic models: wrong types become 400s before any work is done.

Unknown fields are ignored (as vLLM does): clients send vendor extras we need not know.
Numbers are strict (the string "0.5" is not a temperature), ints are never floats.
"""

from __future__ import annotations

from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

TokenId = Annotated[StrictInt, Field(ge=0)]
Prompt = Union[StrictStr, List[StrictStr], List[TokenId], List[List[TokenId]]]
Stop = Union[StrictStr, List[StrictStr], None]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SamplingFields(_Body):
    """Fields shared by /v1/completions and /v1/chat/completions."""

    model: StrictStr
    temperature: Optional[StrictFloat] = None
    top_p: Optional[StrictFloat] = None
    top_k: Optional[StrictInt] = None  # vLLM extension
    min_p: Optional[StrictFloat] = None  # vLLM extension
    repetition_penalty: Optional[StrictFloat] = None  # vLLM extension
    presence_penalty: Optional[StrictFloat] = None
    frequency_penalty: Optional[StrictFloat] = None
    n: StrictInt = 1
    stop: Stop = None
    seed: Optional[StrictInt] = None
    stream: StrictBool = False
    stream_options: Optional[Dict[str, Any]] = None
    user: Optional[StrictStr] = None
    # constrained decoding through extra_body (vLLM's names)
    guided_regex: Optional[StrictStr] = None
    guided_choice: Optional[List[StrictStr]] = None
    guided_json: Optional[Union[Dict[str, Any], StrictStr]] = None


class CompletionRequest(SamplingFields):
    prompt: Prompt
    max_tokens: Optional[StrictInt] = 16  # OpenAI's default for completions
    logprobs: Optional[StrictInt] = None  # top-N alternatives per token
    echo: StrictBool = False
    best_of: Optional[StrictInt] = None
    suffix: Optional[StrictStr] = None


class FunctionCall(_Body):
    name: StrictStr
    arguments: StrictStr


class ToolCall(_Body):
    id: Optional[StrictStr] = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ContentPart(_Body):
    type: StrictStr
    text: Optional[StrictStr] = None
    # llmkit extension: a part the client marks as untrusted data (a retrieved document, a web page);
    # with guards on it is spotlighted, otherwise it is plain text
    untrusted: Optional[StrictBool] = None
    source: Optional[StrictStr] = None


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[StrictStr, List[ContentPart], None] = None
    name: Optional[StrictStr] = None
    tool_calls: Optional[List[ToolCall]] = None
    tool_call_id: Optional[StrictStr] = None


class FunctionDef(_Body):
    name: StrictStr
    description: Optional[StrictStr] = None
    parameters: Optional[Dict[str, Any]] = None


class Tool(_Body):
    type: Literal["function"] = "function"
    function: FunctionDef


class JsonSchemaFormat(_Body):
    name: Optional[StrictStr] = None
    schema_: Optional[Dict[str, Any]] = Field(default=None, alias="schema")
    strict: Optional[StrictBool] = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchemaFormat] = None


class ChatRequest(SamplingFields):
    messages: List[ChatMessage] = Field(min_length=1)
    max_tokens: Optional[StrictInt] = None
    max_completion_tokens: Optional[StrictInt] = None
    logprobs: StrictBool = False
    top_logprobs: Optional[StrictInt] = None
    tools: Optional[List[Tool]] = None
    tool_choice: Union[Literal["none", "auto", "required"], Dict[str, Any], None] = None
    parallel_tool_calls: Optional[StrictBool] = None
    response_format: Optional[ResponseFormat] = None


class TokenizeRequest(_Body):
    model: Optional[StrictStr] = None
    prompt: Optional[StrictStr] = None
    messages: Optional[List[ChatMessage]] = None
    add_special_tokens: StrictBool = False
    add_generation_prompt: StrictBool = True


class DetokenizeRequest(_Body):
    model: Optional[StrictStr] = None
    tokens: List[TokenId]


def message_text(content: Union[str, List[ContentPart], None]) -> str:
    """A message's text: OpenAI allows a string or a list of typed parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text or "" for p in content if p.type == "text")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# documented on every route, so the OpenAPI schema says what clients really get
ERROR_RESPONSES: Dict[int, Dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in [(400, "invalid request"), (401, "missing or wrong API key"), (404, "unknown model"),
                         (413, "body too large"), (429, "busy: retry after Retry-After seconds")]}
