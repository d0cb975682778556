"""Chat templates: a model's own Jinja template -> text -> ids + an SFT loss mask.

Rendering matches ``transformers``' ``apply_chat_template``: the same sandboxed
Jinja environment (trim_blocks, lstrip_blocks, ``raise_exception``,
``strftime_now``, a ``tojson`` that keeps non-ASCII)::

    >>> t = ChatTemplate.builtin("chatml")
    >>> t.render_text([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'

``render(tokenizer, messages)`` also returns the assistant mask: 1 on the tokens
of each assistant message's content and on the end-of-turn token right after
it (``<|im_end|>``, ``<|eot_id|>``, eos), 0 elsewhere — what SFT trains on.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmkit.core.errors import TemplateError

if TYPE_CHECKING:
    from llmkit.tokenizer.bpe import Tokenizer

ROLES = ("system", "user", "assistant", "tool")

BUILTIN: dict[str, str] = {
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
        " + message['content'] | trim + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    "alpaca": (
        "{% if messages and messages[0]['role'] == 'system' %}"
        "{{ messages[0]['content'] + '\n\n' }}{% set loop_messages = messages[1:] %}"
        "{% else %}"
        "{{ 'Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n' }}"
        "{% set loop_messages = messages %}"
        "{% endif %}"
        "{% for message in loop_messages %}"
        "{% if message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'assistant' %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}"
        "{% else %}{{ raise_exception('alpaca has no ' + message['role'] + ' role') }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
    ),
}


def _raise_exception(message: str) -> None:
    raise TemplateError(f"chat template refused the conversation: {message}", "fix the messages")


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML and non-ASCII; chat templates expect plain JSON.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _Generation(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` (HF's assistant marker) renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def validate_messages(messages: Any) -> None:
    """TemplateError unless ``messages`` is a list of {role, content: str} dicts."""
    if not isinstance(messages, (list, tuple)):
        raise TemplateError(f"messages must be a list of dicts, got {type(messages).__name__}",
                            "pass [{'role': 'user', 'content': '...'}, ...]")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise TemplateError(f"message {i} is a {type(m).__name__}, not a dict",
                                "each message is {'role': ..., 'content': ...}")
        if "role" not in m:
            raise TemplateError(f"message {i} has no 'role': {m!r}", f"add 'role', one of {list(ROLES)}")
        if m["role"] not in ROLES:
            raise TemplateError(f"message {i} has unknown role {m['role']!r}", f"use one of {list(ROLES)}")
        content = m.get("content")
        if content is None and m["role"] == "assistant" and m.get("tool_calls"):
            continue  # a pure tool-call turn
        if not isinstance(content, str):
            raise TemplateError(f"message {i} ({m['role']}) content must be a string, got {type(content).__name__}",
                                "pass the message text as a str")


class ChatTemplate:
    """A Jinja chat template; ``bos_token``/``eos_token`` default to the tokenizer's in ``render``."""

    def __init__(self, source: str, *, bos_token: str | None = None, eos_token: str | None = None):
        if not isinstance(source, str) or not source.strip():
            raise TemplateError(f"chat template must be a non-empty string, got {source!r:.60}",
                                "pass the template text or use ChatTemplate.builtin(name)")
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"chat template line {e.lineno}: {e.message}", "fix the Jinja syntax") from None
        self.source = source
        self.bos_token, self.eos_token = bos_token, eos_token

    @classmethod
    def builtin(cls, name: str, **kwargs) -> ChatTemplate:
        if name not in BUILTIN:
            raise TemplateError(f"unknown built-in chat template {name!r}", f"use one of {sorted(BUILTIN)}")
        return cls(BUILTIN[name], **kwargs)

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> ChatTemplate:
        if not tokenizer.chat_template:
            raise TemplateError("this tokenizer has no chat_template",
                                f"use ChatTemplate.builtin(name) with one of {sorted(BUILTIN)}")
        return cls(tokenizer.chat_template)

    # ---- text -------------------------------------------------------------------------------

    def _render(self, messages: list[dict], add_generation_prompt: bool, tools: list | None,
                extra: dict[str, Any]) -> str:
        variables = {"bos_token": self.bos_token or "", "eos_token": self.eos_token or "", **extra,
                     "messages": [dict(m) for m in messages], "tools": tools,
                     "add_generation_prompt": add_generation_prompt}
        try:
            return self._template.render(**variables)
        except TemplateError:
            raise
        except jinja2.TemplateError as e:  # undefined names, sandbox violations
            raise TemplateError(f"chat template failed: {type(e).__name__}: {e}",
                                "check the messages have what the template reads") from None
        except (TypeError, ValueError, KeyError, IndexError) as e:  # a template doing e.g. str + None
            raise TemplateError(f"chat template failed: {type(e).__name__}: {e}",
                                "check the message fields the template uses") from None

    def render_text(self, messages: list[dict], add_generation_prompt: bool = False,
                    tools: list | None = None, **extra: Any) -> str:
        """The conversation as the model sees it (== HF apply_chat_template(tokenize=False))."""
        validate_messages(messages)
        return self._render(list(messages), add_generation_prompt, tools, extra)

    # ---- ids + mask --------------------------------------------------------------------------

    def render(self, tokenizer: Tokenizer, messages: list[dict], add_generation_prompt: bool = False,
               tools: list | None = None, **extra: Any) -> tuple[list[int], list[int]]:
        """(ids, assistant_mask); ids == tokenizer.encode(render_text(...), allowed_special="all")."""
        for key, token_id in (("bos_token", tokenizer.bos_id), ("eos_token", tokenizer.eos_id)):
            if getattr(self, key) is None and key not in extra and token_id is not None:
                extra[key] = tokenizer.id_to_token(token_id)
        validate_messages(messages)
        messages = list(messages)
        text = tokenizer.normalize(self._render(messages, add_generation_prompt, tools, extra))
        ids = tokenizer.encode(text, allowed_special="all")
        spans = self._assistant_spans(tokenizer, messages, text, tools, extra)
        return ids, token_mask(tokenizer, text, ids, spans)

    def _assistant_spans(self, tokenizer: Tokenizer, messages: list[dict], text: str,
                         tools: list | None, extra: dict[str, Any]) -> list[tuple[int, int]]:
        """Char spans of assistant content + end-of-turn, found by rendering growing prefixes.

        render(messages[:i], add_generation_prompt=True) ends where assistant
        message i's content starts; render(messages[:i+1]) contains it. Searching
        the content after that point survives templates that trim or wrap it.
        """
        norm = tokenizer.normalize
        eot = [re.escape(s) for s in sorted(tokenizer.special_tokens, key=len, reverse=True)]
        if extra.get("eos_token"):
            eot.append(re.escape(extra["eos_token"]))
        eot_re = re.compile("|".join(eot)) if eot else None
        spans: list[tuple[int, int]] = []
        last_end = 0
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            try:
                before = norm(self._render(messages[:i], True, tools, extra))
            except TemplateError:  # some templates cannot render an empty or partial conversation
                before = ""
            upto = norm(self._render(messages[:i + 1], False, tools, extra))
            start = len(before) if upto.startswith(before) else _common_prefix(before, upto)
            content = norm(m.get("content") or "")
            found = _find(upto, content, start)
            if found is None:
                raise TemplateError(f"cannot find assistant message {i} in the rendered template",
                                    "the template rewrites message content; mask it yourself")
            begin, end = found
            if not text.startswith(upto):  # the template renders earlier turns differently later on
                found = _find(text, content, last_end)
                if found is None:
                    raise TemplateError(f"cannot find assistant message {i} in the rendered conversation",
                                        "the template rewrites message content; mask it yourself")
                begin, end = found
            hit = eot_re.match(text, end) if eot_re else None
            spans.append((begin, hit.end() if hit else end))
            last_end = spans[-1][1]
        return spans


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _find(haystack: str, content: str, start: int) -> tuple[int, int] | None:
    """Span of content (or of content.strip(), for templates that trim) at or after start."""
    for needle in (content, content.strip()):
        at = haystack.find(needle, start)
        if at >= 0:
            return at, at + len(needle)
    return None


def token_mask(tokenizer: Tokenizer, text: str, ids: list[int], spans: list[tuple[int, int]]) -> list[int]:
    """1 for every token whose bytes overlap one of the char ``spans`` of ``text``.

    Token byte lengths give each token's offset. Bytes the vocab has no token
    for were dropped by the encoder, so they are skipped here too.
    """
    data = text.encode("utf-8", "replace")
    byte_spans = [(len(text[:a].encode("utf-8", "replace")), len(text[:b].encode("utf-8", "replace")))
                  for a, b in spans]
    missing = tokenizer.missing_bytes
    mask: list[int] = []
    pos = 0
    for tid in ids:
        piece = tokenizer.token_bytes(tid)
        while pos < len(data) and data[pos] in missing and not data.startswith(piece, pos):
            pos += 1
        start = pos
        if data.startswith(piece, pos):
            pos += len(piece)
        else:  # a dropped byte sat inside this token's span (".\x04." -> "..")
            for byte in piece:
                while pos < len(data) and data[pos] != byte and data[pos] in missing:
                    pos += 1
                pos += 1
        mask.append(int(any(start < b and pos > a for a, b in byte_spans)))
    assert all(b in missing for b in data[pos:]), "token bytes do not line up with the text"
    return mask
