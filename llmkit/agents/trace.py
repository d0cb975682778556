"""A run's full record: every message, model reply, tool call and result, with timings.

`write_jsonl` is one event per line (machine-readable, `jq`-friendly); `transcript()`
is the same run as text a person reads top to bottom.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from llmkit.core.fileio import atomic_write_file


@dataclass
class Trace:
    events: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, kind: str, **data) -> dict:
        event = {"t": round(time.monotonic() - self.started, 4), "type": kind, **data}
        self.events.append(event)
        return event

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def to_jsonl(self) -> str:
        return "".join(json.dumps(e, ensure_ascii=False, default=str) + "\n" for e in self.events)

    def write_jsonl(self, path: str | os.PathLike) -> None:
        atomic_write_file(path, self.to_jsonl())

    def transcript(self) -> str:
        out = []
        for e in self.events:
            kind, t = e["type"], f"[{e['t']:7.2f}s]"
            if kind == "message":
                calls = "".join(f" <tool_call {c['name']}({c['arguments']})>" for c in e.get("tool_calls", ()))
                out.append(f"{t} {e['role'].upper()}: {e['content']}{calls}")
            elif kind == "llm":
                out.append(f"{t} model: {e['completion_tokens']} tokens in {e['seconds']:.2f}s "
                           f"({e['finish_reason']}){' [constrained]' if e.get('constrained') else ''}")
            elif kind == "tool_call":
                out.append(f"{t} CALL {e['name']}({json.dumps(e['arguments'], ensure_ascii=False, default=str)})")
            elif kind == "tool_result":
                status = "ok" if e["ok"] else "ERROR"
                out.append(f"{t} RESULT {e['name']} [{status}, {e['seconds']:.3f}s]: {e['content']}")
            elif kind == "final":
                out.append(f"{t} FINAL ({e['stop_reason']}): {e['answer']}")
            else:
                rest = {k: v for k, v in e.items() if k not in ("t", "type")}
                out.append(f"{t} {kind}: {json.dumps(rest, ensure_ascii=False, default=str)}")
        return "\n".join(out) + "\n"
