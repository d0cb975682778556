"""A multi-turn chat session over the engine, and the REPL that drives it."""

from __future__ import annotations

import sys
from typing import Callable, Iterator

from llmkit.core.errors import LLMKitError
from llmkit.generate.engine import Engine
from llmkit.generate.sampling import SamplingParams
from llmkit.tokenizer import ChatTemplate

HELP = "commands: /reset (clear history), /system TEXT (set the system prompt), /help, /exit"


class ChatSession:
    def __init__(self, engine: Engine, template: ChatTemplate, params: SamplingParams | None = None,
                 system: str | None = None):
        self.engine = engine
        self.template = template
        self.params = params or SamplingParams()
        self.system = system
        self.messages: list[dict[str, str]] = []

    def history(self) -> list[dict[str, str]]:
        sys_msg = [{"role": "system", "content": self.system}] if self.system else []
        return sys_msg + self.messages

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.template.render_text(messages, add_generation_prompt=True)
        return self.engine.tokenizer.encode(text, allowed_special="all")

    def send(self, text: str) -> Iterator[str]:
        """Stream the assistant's reply to a user message; the turn is kept once complete."""
        messages = self.history() + [{"role": "user", "content": text}]
        ids = self.prompt_ids(messages)
        reply = []
        for delta in self.engine.stream(ids, self.params):
            reply.append(delta.text)
            yield delta.text
        self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": "".join(reply)}]

    def reset(self) -> None:
        self.messages = []


def repl(session: ChatSession, read: Callable[[str], str] = input, write: Callable[[str], object] = sys.stdout.write,
         flush: Callable[[], object] = sys.stdout.flush) -> None:
    """Read-eval-print loop: streams replies; /reset, /system, /help, /exit; errors never end the session."""
    write(f"{HELP}\n")
    while True:
        try:
            line = read(">>> ")
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return
        cmd = line.strip()
        if not cmd:
            continue
        if cmd in ("/exit", "/quit"):
            return
        if cmd == "/help":
            write(HELP + "\n")
        elif cmd == "/reset":
            session.reset()
            write("(history cleared)\n")
        elif cmd.startswith("/system"):
            session.system = cmd[len("/system"):].strip() or None
            session.reset()
            write(f"(system prompt {'set' if session.system else 'cleared'}; history cleared)\n")
        elif cmd.startswith("/"):
            write(f"unknown command {cmd.split()[0]!r}; {HELP}\n")
        else:
            try:
                for piece in session.send(line):
                    write(piece)
                    flush()
                write("\n")
            except KeyboardInterrupt:
                write("\n(interrupted)\n")
            except LLMKitError as e:
                write(f"\nerror: {e}\n" + ("(use /reset to start a fresh conversation)\n"
                                           if "context" in str(e) else ""))
