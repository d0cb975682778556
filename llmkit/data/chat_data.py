"""Fine-tuning data: conversation, preference and unpaired (KTO) JSONL -> token ids + loss masks.

Conversation formats, detected from the first record's keys::

    messages  {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}
    sharegpt  {"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}]}
    alpaca    {"instruction": "...", "input": "...", "output": "..."}

Preference data: ``{"prompt", "chosen", "rejected"}``; unpaired KTO data:
``{"prompt", "completion", "label": true|false}``. ``prompt`` is a string or
a list of messages; answers are strings or a one-message assistant list.

The model's chat template renders every conversation; the loss mask covers
only assistant tokens (and their end-of-turn token).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from llmkit.data.errors import DataError
from llmkit.tokenizer import ChatTemplate, Tokenizer

FORMATS = ("messages", "sharegpt", "alpaca")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "system": "system",
                   "tool": "tool", "function_call": "assistant", "observation": "tool"}


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; DataError naming the line when one is not a JSON object."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {str(p)!r} not found", "pass a .jsonl file, one JSON object per line")
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{p.name} line {n} is not valid JSON ({e.msg} at column {e.colno})",
                                "fix or delete that line") from None
            if not isinstance(obj, dict):
                raise DataError(f"{p.name} line {n} is a JSON {type(obj).__name__}, not an object",
                                "write one JSON object per line")
            yield n, obj


def detect_format(record: dict[str, Any], where: str = "the first record") -> str:
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record and "output" in record:
        return "alpaca"
    raise DataError(f"cannot tell the conversation format of {where} (keys {sorted(record)})",
                    "use OpenAI 'messages', ShareGPT 'conversations', or Alpaca 'instruction'/'output' records")


def to_messages(record: dict[str, Any], fmt: str, where: str) -> list[dict[str, str]]:
    """One record in ``fmt`` -> OpenAI-style messages; DataError when it has no assistant turn."""
    if fmt == "messages":
        msgs = record.get("messages")
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise DataError(f"{where}: 'messages' must be a list of {{role, content}} objects", "fix the record")
        msgs = [{"role": m.get("role"), "content": m.get("content")} for m in msgs]
    elif fmt == "sharegpt":
        turns = record.get("conversations")
        if not isinstance(turns, list):
            raise DataError(f"{where}: 'conversations' must be a list of {{from, value}} objects", "fix the record")
        msgs = []
        for t in turns:
            role = _SHAREGPT_ROLES.get(str(t.get("from", "")).lower()) if isinstance(t, dict) else None
            if role is None:
                raise DataError(f"{where}: unknown ShareGPT speaker {t!r:.60}",
                                f"use 'from' in {sorted(_SHAREGPT_ROLES)}")
            msgs.append({"role": role, "content": t.get("value")})
    elif fmt == "alpaca":
        prompt = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
        msgs = ([{"role": "system", "content": record["system"]}] if record.get("system") else []) + \
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]
    else:
        raise DataError(f"unknown conversation format {fmt!r}", f"use auto or one of {list(FORMATS)}")
    for m in msgs:
        if not isinstance(m["content"], str):
            raise DataError(f"{where}: a {m['role']} turn has non-string content {m['content']!r:.40}",
                            "give every turn text content")
    if not any(m["role"] == "assistant" for m in msgs):
        raise DataError(f"{where} has no assistant turn", "every training conversation needs an assistant answer")
    return msgs


def load_conversations(path: str | os.PathLike, fmt: str = "auto") -> list[list[dict[str, str]]]:
    """Every record of a conversation JSONL as messages (format auto-detected from the first record)."""
    out, name = [], Path(path).name
    for n, rec in read_jsonl(path):
        if fmt == "auto":
            fmt = detect_format(rec, f"{name} line {n}")
        out.append(to_messages(rec, fmt, f"{name} line {n}"))
    if not out:
        raise DataError(f"{name} holds no records", "add one JSON object per line")
    return out


# ---- preference and unpaired data ------------------------------------------------------------------
def prompt_messages(value: Any, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        return [{"role": m.get("role"), "content": m.get("content")} for m in value]
    raise DataError(f"{where}: 'prompt' must be a string or a list of messages", "fix the record")


def _answer_text(value: Any, key: str, where: str) -> str:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0].get("content")
    if not isinstance(value, str):
        raise DataError(f"{where}: {key!r} must be a string (or one assistant message)", "fix the record")
    return value


def _load_records(path: str | os.PathLike, keys: tuple[str, ...], build, shape: str) -> list:
    out, name = [], Path(path).name
    for n, rec in read_jsonl(path):
        where = f"{name} line {n}"
        missing = [k for k in keys if k not in rec]
        if missing:
            raise DataError(f"{where} lacks {missing} (keys {sorted(rec)})", f"records are {shape}")
        out.append(build(rec, where))
    if not out:
        raise DataError(f"{name} holds no records", "add one JSON object per line")
    return out


def load_preferences(path: str | os.PathLike) -> list[tuple[list[dict], str, str]]:
    """[(prompt messages, chosen, rejected)] from {"prompt", "chosen", "rejected"} JSONL."""
    return _load_records(path, ("prompt", "chosen", "rejected"), lambda rec, where: (
        prompt_messages(rec["prompt"], where), _answer_text(rec["chosen"], "chosen", where),
        _answer_text(rec["rejected"], "rejected", where)), '{"prompt", "chosen", "rejected"}')


def load_unpaired(path: str | os.PathLike) -> list[tuple[list[dict], str, bool]]:
    """[(prompt messages, completion, desirable)] from {"prompt", "completion", "label"} JSONL (KTO)."""
    def build(rec, where):
        if not isinstance(rec["label"], bool):
            raise DataError(f"{where}: 'label' must be true or false, got {rec['label']!r}", "use a JSON boolean")
        return prompt_messages(rec["prompt"], where), _answer_text(rec["completion"], "completion", where), \
            rec["label"]

    out = _load_records(path, ("prompt", "completion", "label"), build, '{"prompt", "completion", "label": bool}')
    labels = {x[2] for x in out}
    if len(labels) < 2:
        raise DataError(f"{Path(path).name} has only {'desirable' if True in labels else 'undesirable'} examples",
                        "KTO needs both labels (true and false)")
    return out


def load_prompts(path: str | os.PathLike) -> list[tuple[list[dict], dict[str, Any]]]:
    """[(prompt messages, the whole record)] from {"prompt", ...} JSONL (GRPO: rewards read the record)."""
    return _load_records(path, ("prompt",), lambda rec, where: (prompt_messages(rec["prompt"], where), rec),
                         '{"prompt": ..., "answer": ...}')


# ---- tokenization ---------------------------------------------------------------------------------
def template_for(tokenizer: Tokenizer, name: str | None = None) -> ChatTemplate:
    """A built-in template by name, else the tokenizer's own, else ChatML."""
    if name:
        return ChatTemplate.builtin(name)
    return ChatTemplate(tokenizer.chat_template) if tokenizer.chat_template else ChatTemplate.builtin("chatml")


@dataclass
class Completion:
    """A prompt and one answer as token ids; ``mask`` marks the answer tokens that carry loss."""

    prompt: list[int]
    answer: list[int]
    mask: list[int]

    @property
    def ids(self) -> list[int]:
        return self.prompt + self.answer


def encode_conversation(tokenizer: Tokenizer, template: ChatTemplate, messages: list[dict],
                        max_len: int) -> tuple[list[int], list[int]] | None:
    """(ids, assistant mask) cut to max_len tokens; None when no assistant token survives the cut."""
    ids, mask = template.render(tokenizer, messages)
    ids, mask = ids[:max_len], mask[:max_len]
    return (ids, mask) if any(mask[1:]) else None


def encode_completion(tokenizer: Tokenizer, template: ChatTemplate, prompt: list[dict], answer: str,
                      max_len: int) -> Completion | None:
    """Prompt (rendered with the generation prompt) + answer; the answer is cut so the total fits max_len."""
    ids, mask = template.render(tokenizer, prompt + [{"role": "assistant", "content": answer}])
    head = template.render(tokenizer, prompt, add_generation_prompt=True)[0]
    n = len(head) if ids[:len(head)] == head else next(i for i, m in enumerate(mask) if m)
    if n >= max_len - 1:
        return None
    return Completion(ids[:n], ids[n:max_len], mask[n:max_len])


def encode_all(items, encode, what: str) -> list:
    """Encode every item; DataError if none fits, and a one-line note of how many were dropped."""
    out = [e for e in (encode(x) for x in items) if e is not None]
    if not out:
        raise DataError(f"no {what} fits max_len with an answer token left", "raise max_len or shorten the data")
    if len(out) < len(items):
        print(f"note: {len(items) - len(out)} of {len(items)} {what}s dropped (no answer token within max_len)")
    return out
