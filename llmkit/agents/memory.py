"""Conversation memory across agent turns: a plain buffer, and one that summarizes to stay in budget.

    mem = SummaryMemory(llm, budget_tokens=600, keep_last=4)
    mem.add({"role": "user", "content": ...}); mem.messages()   # -> a summary turn + the recent turns

Only user turns and final answers are remembered, not every tool step: the trace keeps those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmkit.agents.errors import AgentError

SUMMARY_PROMPT = ("Summarize the conversation below in at most three sentences. Keep names, numbers and "
                  "facts the user gave; leave out greetings.\n\n{text}")
SUMMARY_PREFIX = "Summary of the earlier conversation: "


@dataclass
class BufferMemory:
    """Every turn, or the last `max_messages` of them."""

    max_messages: int | None = None
    turns: list[dict] = field(default_factory=list)

    def add(self, message: dict) -> None:
        self.turns.append({"role": message["role"], "content": message.get("content") or ""})
        if self.max_messages is not None and len(self.turns) > self.max_messages:
            del self.turns[:len(self.turns) - self.max_messages]

    def messages(self) -> list[dict]:
        return list(self.turns)

    def clear(self) -> None:
        self.turns.clear()


def _render(turns: list[dict]) -> str:
    return "\n".join(f"{t['role']}: {t['content']}" for t in turns)


@dataclass
class SummaryMemory:
    """Recent turns verbatim; older ones folded into a running summary written by the model.

    Invariant after every `add`: tokens(messages()) <= budget_tokens. The summary is
    re-written when it would overflow, and cut (with a marker) as the last resort, so a
    model that writes a long summary cannot break the budget.
    """

    llm: object
    budget_tokens: int = 1024
    keep_last: int = 4
    summary: str = ""
    turns: list[dict] = field(default_factory=list)
    summaries_written: int = 0

    def __post_init__(self) -> None:
        if self.budget_tokens < 32 or self.keep_last < 0:
            raise AgentError(f"budget_tokens={self.budget_tokens}, keep_last={self.keep_last}",
                             "use budget_tokens >= 32 and keep_last >= 0")

    def tokens(self) -> int:
        return sum(self.llm.count_tokens(m["content"]) + 4 for m in self.messages())  # +4: a turn's role markers

    def messages(self) -> list[dict]:
        head = [{"role": "system", "content": SUMMARY_PREFIX + self.summary}] if self.summary else []
        return head + list(self.turns)

    def add(self, message: dict) -> None:
        self.turns.append({"role": message["role"], "content": message.get("content") or ""})
        while self.tokens() > self.budget_tokens and len(self.turns) > self.keep_last:
            n = max(1, len(self.turns) - self.keep_last)
            self._fold(self.turns[:n])
            del self.turns[:n]
        self._enforce()

    def _fold(self, old: list[dict]) -> None:
        text = (f"Earlier summary: {self.summary}\n" if self.summary else "") + _render(old)
        reply = self.llm.chat([{"role": "user", "content": SUMMARY_PROMPT.format(text=text)}],
                              max_tokens=max(16, self.budget_tokens // 4))
        self.summary = reply.text.strip()
        self.summaries_written += 1

    def _enforce(self) -> None:
        """Last resort when even keep_last turns + the summary overflow: shorten, then drop."""
        while self.tokens() > self.budget_tokens and self.summary:
            self.summary = self.summary[: len(self.summary) // 2].rstrip() + " …" if len(self.summary) > 8 else ""
        while self.tokens() > self.budget_tokens and len(self.turns) > 1:
            self.turns.pop(0)
        while self.turns and self.tokens() > self.budget_tokens and len(self.turns[-1]["content"]) > 1:
            t = self.turns[-1]  # keep the end of the one turn left: its newest words matter most
            self.turns[-1] = {"role": t["role"], "content": t["content"][len(t["content"]) // 2:]}

    def clear(self) -> None:
        self.turns.clear()
        self.summary = ""
