"""Multiple-choice tasks from a YAML file and a local JSONL file — no code.

    name: capitals                       # task name (default: the file's stem)
    data: capitals.jsonl                 # relative to the YAML file
    context: "Question: {question}\\nAnswer:"   # str.format over the row's fields
    choices: options                     # row field holding the list of choices
    gold: answer                         # row field: an index, or the text of the right choice
    choice: "{choice}"                   # optional template per choice ({choice}, plus row fields)
    description: ""                      # optional, put once before few-shot examples
    target_delimiter: " "                # optional
    metrics: [acc, acc_norm]             # optional

Every error names the file and the key.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from llmkit.core.errors import ConfigError
from llmkit.eval.tasks import Doc, Source, Task

TASKS_DIR = Path(__file__).resolve().parent.parent / "configs" / "tasks"
REQUIRED = ("data", "context", "choices", "gold")
OPTIONAL = ("name", "kind", "choice", "description", "target_delimiter", "fewshot_delimiter", "metrics")
METRICS = ("acc", "acc_norm")


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
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(spec).__name__}", f"give keys {', '.join(REQUIRED)}")
    for key in REQUIRED:
        if key not in spec:
            raise ConfigError(f"{path}: missing key {key!r}", f"required keys: {', '.join(REQUIRED)}")
    for key in spec:
        if key not in REQUIRED + OPTIONAL:
            raise ConfigError(f"{path}: unknown key {key!r}", f"valid keys: {', '.join(REQUIRED + OPTIONAL)}")
    for key in ("data", "context", "choices", "gold", "choice", "description", "target_delimiter", "name"):
        if key in spec and not isinstance(spec[key], str):
            raise ConfigError(f"{path}: key {key!r} must be a string, got {spec[key]!r}", "quote the value")
    if spec.get("kind", "mc") != "mc":
        raise ConfigError(f"{path}: key 'kind' is {spec['kind']!r}", "YAML tasks support kind: mc")
    metrics = spec.get("metrics", ["acc", "acc_norm"])
    if not isinstance(metrics, list) or any(m not in METRICS for m in metrics):
        raise ConfigError(f"{path}: key 'metrics' is {metrics!r}", f"a list drawn from {', '.join(METRICS)}")

    data = Path(spec["data"])
    data = data if data.is_absolute() else path.parent / data
    to_doc = _row_formatter(path, spec)
    return Task(
        name=spec.get("name", path.stem),
        kind="mc",
        source=Source("jsonl", str(data)),
        split="all",
        to_doc=to_doc,
        description=spec.get("description", ""),
        target_delimiter=spec.get("target_delimiter", " "),
        fewshot_delimiter=spec.get("fewshot_delimiter", "\n\n"),
        metrics=tuple(metrics),
    )


def _row_formatter(path: Path, spec: dict):
    context_t, choices_key, gold_key = spec["context"], spec["choices"], spec["gold"]
    choice_t = spec.get("choice", "{choice}")

    def fill(template: str, key: str, row: dict, **extra) -> str:
        try:
            return template.format(**row, **extra)
        except KeyError as e:
            raise ConfigError(f"{path}: key {key!r} uses field {e.args[0]!r} the data rows do not have", f"fields: {', '.join(row)}") from None
        except (IndexError, ValueError) as e:
            raise ConfigError(f"{path}: key {key!r} is not a valid template ({e})", "use {field} placeholders; write {{ for a brace") from None

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
