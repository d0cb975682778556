"""ReAct (Yao et al., 2022) for models without native tool calling: Thought / Action / Observation.

The model continues one assistant turn; the loop stops it at "Observation:", runs the
action and writes the observation itself, so the model never invents a tool result.

    Thought: I need the product.
    Action: calculator
    Action Input: {"expression": "17 * 23"}
    Observation: 391
    Thought: I know the answer.
    Final Answer: 391

`step_regex` is the same format as a grammar: under constrained decoding every step is
either a well-formed action on a registered tool, with arguments valid for its schema,
or a final answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from llmkit.generate.constrain.schema import schema_regex

STOP = ["\nObservation:", "Observation:"]
THOUGHT_CHARS = 200  # one line of reasoning: a 135M model rambles otherwise
ANSWER_CHARS = 300

INSTRUCTIONS = """Answer the question. You can use these tools:

{tools}

Use exactly this format:

Thought: what to do next
Action: the tool name, one of [{names}]
Action Input: the tool arguments as a JSON object
Observation: the tool result (written for you)
... (Thought / Action / Action Input / Observation can repeat)
Thought: I now know the final answer
Final Answer: the answer to the question"""

EXAMPLE = """

Example:
Question: {question}
Thought: I should use a tool.
Action: {name}
Action Input: {args}
Observation: {result}
Thought: I now know the final answer
Final Answer: {result}"""


def react_system_prompt(tools: list[dict], example: dict | None = None) -> str:
    """The ReAct instructions for `tools` (OpenAI specs); `example` = {name, question, arguments, result}
    adds one worked example (one-shot prompting)."""
    lines = []
    for t in tools:
        fn = t.get("function", t)
        params = json.dumps(fn.get("parameters", {}).get("properties", {}), ensure_ascii=False)
        lines.append(f"{fn['name']}: {fn.get('description', '')} Arguments: {params}")
    text = INSTRUCTIONS.format(tools="\n".join(lines), names=", ".join(_names(tools)))
    if example:
        text += EXAMPLE.format(name=example["name"], question=example["question"],
                               args=json.dumps(example["arguments"], ensure_ascii=False), result=example["result"])
    return text


def _names(tools: list[dict]) -> list[str]:
    return [t.get("function", t)["name"] for t in tools]


@dataclass
class ReActStep:
    thought: str
    action: str | None = None
    action_input: str | None = None  # JSON text as written
    final: str | None = None
    error: str | None = None  # the step did not parse: this is the observation the model gets


_FINAL = re.compile(r"Final Answer\s*:\s*(.*)", re.S)
_ACTION = re.compile(r"Action\s*:\s*(.+?)\s*(?:\n|$)")
_INPUT = re.compile(r"Action Input\s*:\s*(.*)", re.S)


def parse_react(text: str) -> ReActStep:
    """One model step (what follows "Thought:") -> its parts; a malformed step says what is missing.

    >>> s = parse_react(' add them\\nAction: calculator\\nAction Input: {"expression": "1+2"}')
    >>> s.action, s.action_input
    ('calculator', '{"expression": "1+2"}')
    """
    head = re.split(r"\n\s*(?:Action|Final Answer)\s*:", text, maxsplit=1)[0]
    thought = head.strip()
    final = _FINAL.search(text)
    action = _ACTION.search(text)
    if final and (not action or final.start() < action.start()):
        return ReActStep(thought, final=final.group(1).strip())
    if not action:
        return ReActStep(thought, error="no 'Action:' or 'Final Answer:' line. Write 'Action: <tool name>' "
                                        "then 'Action Input: {json}', or 'Final Answer: <answer>'.")
    inp = _INPUT.search(text, action.end() - 1)
    if not inp:
        return ReActStep(thought, action.group(1).strip(),
                         error="'Action:' without 'Action Input:'. Write 'Action Input: {json arguments}'.")
    raw = inp.group(1).strip()
    # the JSON object ends where its braces balance; anything after it is the model running on
    end = _json_end(raw)
    return ReActStep(thought, action.group(1).strip().strip("`'\""), raw[:end] if end else raw)


def _json_end(text: str) -> int | None:
    if not text.startswith("{"):
        return None
    try:
        _, end = json.JSONDecoder().raw_decode(text)
        return end
    except json.JSONDecodeError:
        return None


def format_step(step: ReActStep, observation: str) -> str:
    """The scratchpad text of a finished step (the next prompt continues after it)."""
    body = f"Thought: {step.thought}\n"
    if step.action is not None:
        body += f"Action: {step.action}\nAction Input: {step.action_input or ''}\n"
    return body + f"Observation: {observation}\n"


def step_regex(tools: list[dict], allow_final: bool = True, allow_action: bool = True) -> str:
    """What may follow "Thought:": one line of thought, then a valid action or a final answer."""
    branches = []
    if allow_action:
        for t in tools:
            fn = t.get("function", t)
            params = fn.get("parameters") or {"type": "object", "properties": {}}
            branches.append(f"Action: {re.escape(fn['name'])}\\nAction Input: {schema_regex(params)}")
    if allow_final:
        branches.append(f"Final Answer: [^\\n]{{1,{ANSWER_CHARS}}}")
    assert branches, "a ReAct step needs an action or a final answer"
    return f" [^\\n]{{1,{THOUGHT_CHARS}}}\\n(" + "|".join(branches) + ")"
