"""Tasks from a YAML file and a local JSONL file — no code.

Multiple choice (``kind: mc``, the default)::

    name: capitals                       # task name (default: the file's stem)
    data: capitals.jsonl                 # relative to the YAML file
    context: "Question: {question}\\nAnswer:"   # str.format over the row's fields
    choices: options                     # row field holding the list of choices
    gold: answer                         # row field: an index, or the text of the right choice
    choice: "{choice}"                   # optional template per choice ({choice}, plus row fields)
    description: ""                      # optional, put once before few-shot examples
    target_delimiter: " "                # optional
    metrics: [acc, acc_norm]             # optional

Generative (``kind: generate``): greedy decoding until a stop string, then matching::

    kind: generate
    data: facts.jsonl
    context: "Q: {question}\nA:"
    answers: answer                      # row field: the accepted answer, or a list of them
    stop: ["\n"]                          # optional (default: a newline)
    max_tokens: 32                       # optional
    normalize: squad                     # optional: squad (default), number (final number, GSM8K-style)
    metrics: [exact_match, f1]           # optional

Every error names the file and the key.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from llmkit.core.errors import ConfigError
from llmkit.eval.tasks import Doc, Source, Task

TASKS_DIR = Path(__file__).resolve().parent.parent / "configs" / "tasks"
REQUIRED = {"mc": ("data", "context", "choices", "gold"), "generate": ("data", "context", "answers")}
COMMON = ("name", "kind", "description", "target_delimiter", "fewshot_delimiter", "metrics")
OPTIONAL = {"mc": COMMON + ("choice",), "generate": COMMON + ("stop", "max_tokens", "normalize")}
METRICS = {"mc": ("acc", "acc_norm"), "generate": ("exact_match", "f1")}


def packaged_yaml_tasks() -> dict[str, Path]:
    """Task name (file stem) -> YAML path, for the files in llmkit/configs/tasks/."""
    if not TASKS_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(TASKS_DIR.glob("*.y*ml"))}


def load_yaml_task(path: str | Path) -> Task:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"task file {str(path)!r} does not exist", "pass a path to a task .yaml")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise ConfigError(f"{path}:{line} is not valid YAML", "check indentation and quoting") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(spec).__name__}", f"give keys {', '.join(REQUIRED['mc'])}")
    kind = spec.get("kind", "mc")
    if kind not in REQUIRED:
        raise ConfigError(f"{path}: key 'kind' is {kind!r}", "use kind: mc or kind: generate")
    for key in REQUIRED[kind]:
        if key not in spec:
            raise ConfigError(f"{path}: missing key {key!r}", f"required keys for kind {kind}: {', '.join(REQUIRED[kind])}")
    valid = REQUIRED[kind] + OPTIONAL[kind]
    for key in spec:
        if key not in valid:
            raise ConfigError(f"{path}: unknown key {key!r}", f"valid keys for kind {kind}: {', '.join(valid)}")
    for key in ("data", "context", "choices", "gold", "choice", "description", "target_delimiter", "name", "answers"):
        if key in spec and not isinstance(spec[key], str):
            raise ConfigError(f"{path}: key {key!r} must be a string, got {spec[key]!r}", "quote the value")
    metrics = spec.get("metrics", list(METRICS[kind]))
    if not isinstance(metrics, list) or not metrics or any(m not in METRICS[kind] for m in metrics):
        raise ConfigError(f"{path}: key 'metrics' is {metrics!r}", f"a list drawn from {', '.join(METRICS[kind])}")
    data = Path(spec["data"])
    data = data if data.is_absolute() else path.parent / data
    common = dict(name=spec.get("name", path.stem), kind=kind, source=Source("jsonl", str(data)), split="all",
                  description=spec.get("description", ""), target_delimiter=spec.get("target_delimiter", " "),
                  fewshot_delimiter=spec.get("fewshot_delimiter", "\n\n"), metrics=tuple(metrics))
    if kind == "generate":
        return Task(to_doc=_answer_formatter(path, spec), **common, **_generation_keys(path, spec))
    return Task(to_doc=_row_formatter(path, spec), **common)


def _generation_keys(path: Path, spec: dict) -> dict:
    stop = spec.get("stop", ["\n"])
    if not isinstance(stop, list) or not all(isinstance(x, str) and x for x in stop):
        raise ConfigError(f"{path}: key 'stop' is {stop!r}", 'a list of non-empty strings, e.g. ["\\n"]')
    max_tokens = spec.get("max_tokens", 32)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
        raise ConfigError(f"{path}: key 'max_tokens' is {max_tokens!r}", "a positive integer, e.g. 32")
    normalize = spec.get("normalize", "squad")
    if normalize not in ("squad", "number"):
        raise ConfigError(f"{path}: key 'normalize' is {normalize!r}", "use squad or number")
    return {"stop": tuple(stop), "max_tokens": max_tokens, "normalize": normalize}


def _fill(path: Path, template: str, key: str, row: dict, **extra) -> str:
    try:
        return template.format(**row, **extra)
    except KeyError as e:
        raise ConfigError(f"{path}: key {key!r} uses field {e.args[0]!r} the data rows do not have", f"fields: {', '.join(row)}") from None
    except (IndexError, ValueError) as e:
        raise ConfigError(f"{path}: key {key!r} is not a valid template ({e})", "use {field} placeholders; write {{ for a brace") from None


def _answer_formatter(path: Path, spec: dict):
    context_t, answers_key = spec["context"], spec["answers"]

    def to_doc(row: dict) -> Doc:
        if answers_key not in row:
            raise ConfigError(f"{path}: key 'answers' names field {answers_key!r} the data rows do not have", f"fields: {', '.join(row)}")
        answers = row[answers_key]
        answers = [answers] if isinstance(answers, (str, int, float)) and not isinstance(answers, bool) else answers
        if not isinstance(answers, list) or not answers or not all(isinstance(a, (str, int, float)) for a in answers):
            raise ConfigError(f"{path}: key 'answers' field {answers_key!r} is {row[answers_key]!r}", "a string or a list of strings")
        return Doc((_fill(path, context_t, "context", row),), (), None, answers=tuple(str(a) for a in answers))

    return to_doc


def _row_formatter(path: Path, spec: dict):
    context_t, choices_key, gold_key = spec["context"], spec["choices"], spec["gold"]
    choice_t = spec.get("choice", "{choice}")

    def fill(template: str, key: str, row: dict, **extra) -> str:
        return _fill(path, template, key, row, **extra)

    def to_doc(row: dict) -> Doc:
        for key, field in (("choices", choices_key), ("gold", gold_key)):
            if field not in row:
                raise ConfigError(f"{path}: key {key!r} names field {field!r} the data rows do not have", f"fields: {', '.join(row)}")
        options = row[choices_key]
        if not isinstance(options, list) or not options:
            raise ConfigError(f"{path}: key 'choices' field {choices_key!r} must hold a non-empty list", "e.g. \"options\": [\"a\", \"b\"]")
        targets = tuple(fill(choice_t, "choice", row, choice=str(o)) for o in options)
        gold = row[gold_key]
        if isinstance(gold, bool) or not isinstance(gold, (int, str)):
            raise ConfigError(f"{path}: key 'gold' field {gold_key!r} is {gold!r}", "an index or the text of the right choice")
        if isinstance(gold, str):
            if gold not in [str(o) for o in options]:
                raise ConfigError(f"{path}: key 'gold' value {gold!r} is not one of the choices", "use an index or a choice's exact text")
            gold = [str(o) for o in options].index(gold)
        if not 0 <= gold < len(options):
            raise ConfigError(f"{path}: key 'gold' index {gold} is out of range for {len(options)} choices", "indices start at 0")
        return Doc((fill(context_t, "context", row),), targets, gold)

    return to_doc
