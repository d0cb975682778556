"""Synthetic instruction data with any llmkit model: self-instruct and Evol-Instruct, then filters.

    report = synth("data/synth.jsonl", SynthConfig(method="self-instruct", n=200))

**Self-instruct** (Wang et al., 2022) grows a task pool from a few seed tasks. Each new task is
written by the model after it reads a handful of tasks drawn from the pool (mostly seeds, some
generated ones), so the pool drifts away from the seeds without losing their style. The model
then answers its own task.

**Evol-Instruct** (Xu et al., WizardLM, 2023) starts from existing tasks and rewrites each one
into a harder or rarer one: add a constraint, ask for more depth, make it concrete, require
several reasoning steps (in depth), or write a new task in the same domain (in breadth).
Rewrites that did not evolve are dropped: a copy of the parent, a rewrite that leaks the
prompt's wording, or an answer that is a refusal.

A generated task only joins the pool if it passes every filter (llmkit.data.filters): length,
a regex of things a text model cannot do (see an image, open a link), the English heuristic,
and MinHash near-duplicate removal against everything already in the pool. The output is
OpenAI ``messages`` JSONL, so ``llmkit finetune sft`` reads it as is. The file is rewritten
atomically after every batch. A re-run continues from what the file holds until it has ``n``
records.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from llmkit.core.errors import ConfigError
from llmkit.core.fileio import atomic_write_file
from llmkit.data.filters import length_ok, looks_english, minhash, regex_ok, shingles

METHODS = ("self-instruct", "evol")
# tasks a text-only model cannot do (self-instruct's keyword filter, in our words)
NOT_TEXT = r"(?i)\b(image|picture|photo|video|audio|diagram|graph|chart|draw|url|link|attach\w*|file)s?\b"
REFUSAL = r"(?i)\b(sorry|as an ai|i cannot|i can't|i am unable|i'm unable)\b"
CHATTER = r"(?i)^(i'm|i am|i'll|i'd|i will|sure|certainly|okay|ok|here is|here's|hello|hi|possible)\b"  # talk, not a task
# an instruction asks something or starts with a verb that asks for work; a statement is an answer, not a task
VERBS = frozenset("""add analyze answer arrange brainstorm calculate categorize change check choose classify combine compare
compose compute convert count create debug define describe design determine develop discuss draft edit estimate
evaluate explain expand extract find fix generate give identify imagine improve invent justify list make match name
numbers order outline paraphrase plan predict prepare propose provide rank recommend rephrase replace rewrite
select show simplify solve sort spell state suggest summarize tell transform translate turn use verify write""".split())
META = r"(?i)\btasks?\b|:\s*$"  # a task about tasks, or a header with nothing after it

SELF_INSTRUCT = ("Here are some tasks that people give to an AI assistant:\n{examples}\n\n"
                 "Write one new task that is different from all of them. It must be something that can be "
                 "done with text alone. Reply with the task only.")
EVOLVE = ("Rewrite the task below so that it is harder: {how} Reply with the rewritten task only.\n\n"
          "Task: {task}")
# Evol-Instruct's operations, in our words: (what to ask, how the reply starts). A small model asked to
# rewrite a task tends to answer it instead, so the reply is primed: it starts as the parent task
# followed by the opening of the change, and the model only writes the rest.
EVOLUTIONS = {
    "constraints": ("add one more requirement to it.", "{stem},"),
    "deepen": ("make it ask for a deeper or broader answer.", "{stem}, and explain"),
    "concretize": ("replace its general ideas with more specific ones.", "{stem}, for"),
    "reasoning": ("make it require several explicit reasoning steps.", "{stem}. Work through it step by step:"),
    "breadth": ("instead of editing it, write a brand-new, rarer task from the same domain.", "{verb}"),
}


@dataclass(frozen=True)
class SynthConfig:
    method: str = "self-instruct"
    n: int = 100  # records wanted in the output file
    model: str = "smollm2"
    seeds: str | None = None  # conversation JSONL (messages / ShareGPT / Alpaca); default: the packaged seeds
    batch: int = 8  # tasks generated per round
    shots: int = 6  # self-instruct: tasks shown per prompt (2 of them generated, once the pool has some)
    temperature: float = 0.7  # for writing tasks (self-instruct's value); answers are greedy
    task_tokens: int = 96
    answer_tokens: int = 256
    dedup: float = 0.7  # MinHash Jaccard at or above which a task is a near-duplicate
    min_chars: int = 12
    max_chars: int = 600
    english: bool = True
    seed: int = 0
    max_rounds: int = 0  # 0: 20 * n / batch, a stop for models that write almost nothing usable

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"unknown synth method {self.method!r}", "use --method self-instruct or evol")
        for name in ("n", "batch", "shots", "task_tokens", "answer_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}", f"set --{name.replace('_', '-')} to 1 or more")
        if not 0.0 < self.dedup <= 1.0:
            raise ConfigError(f"dedup={self.dedup}", "use a Jaccard threshold in (0, 1]")


@dataclass
class SynthReport:
    path: Path
    kept: int  # records in the file now
    added: int  # records this run added
    rounds: int
    rejected: Counter = field(default_factory=Counter)  # reason -> count


def seed_tasks(path: str | None = None) -> list[dict]:
    """Seed records as {"instruction", "output"}: the first user turn and the assistant reply."""
    from llmkit.data.chat_data import load_conversations

    if path is None:
        with resources.as_file(resources.files("llmkit.train") / "seed_tasks.jsonl") as p:
            convos = load_conversations(p)
    else:
        convos = load_conversations(path)
    out = []
    for msgs in convos:
        user = next((m["content"] for m in msgs if m["role"] == "user"), None)
        reply = next((m["content"] for m in msgs if m["role"] == "assistant"), "")
        if user:
            out.append({"instruction": user.strip(), "output": reply.strip()})
    if not out:
        raise ConfigError(f"no seed tasks in {path!r}", "give a JSONL with at least one user turn")
    return out


LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+")


def first_task(text: str) -> str:
    """The task in a model's reply: strip a leading label, list marker or quotes; keep the first paragraph,
    and stop where the model goes on listing more tasks ("2. ...")."""
    text = text.strip().split("\n\n")[0].strip()
    text = re.sub(r"^(?:new task|task|rewritten task|instruction)\s*\d*\s*[:.-]\s*", "", text, flags=re.I)
    text = LIST_ITEM.sub("", text, count=1)
    lines = text.splitlines()
    cut = next((i for i, line in enumerate(lines) if i and LIST_ITEM.match(line)), len(lines))
    return "\n".join(lines[:cut]).strip().strip('"').strip()


class Pool:
    """Tasks seen so far, for near-duplicate checks: MinHash-estimated Jaccard of word 3-shingles at or
    above ``threshold``, or one task's shingles mostly (>= 80%) inside another's, which catches a short
    task that is a longer one cut down ("Is 221 divisible by 13?" inside the seed that adds "Show
    your reasoning.")."""

    CONTAINED = 0.8

    def __init__(self, threshold: float):
        self.threshold, self.tasks, self._sigs, self._sets = threshold, [], [], []

    def near(self, task: str, parent: str | None = None) -> bool:
        """An evolution holds its ``parent`` by construction: only that task is exempt from the containment test."""
        if not self._sigs:
            return False
        sh = shingles(task)
        if float((np.stack(self._sigs) == minhash(sh)).mean(axis=1).max()) >= self.threshold:
            return True
        return any(len(sh & other) >= self.CONTAINED * min(len(sh), len(other))
                   for t, other in zip(self.tasks, self._sets) if t != parent)

    def add(self, task: str) -> None:
        sh = shingles(task)
        self.tasks.append(task)
        self._sigs.append(minhash(sh))
        self._sets.append(sh)


def task_problem(task: str, cfg: SynthConfig, pool: Pool, parent: str | None = None) -> str | None:
    """Why a generated task is rejected, or None when it passes every filter."""
    if not length_ok(task, cfg.min_chars, cfg.max_chars):
        return "length"
    if not regex_ok(task, must_not_match=NOT_TEXT):
        return "not text-only"
    if not regex_ok(task, must_not_match=r"(?i)(#|\btask below\b|\bgiven prompt\b|\bnew task\b)"):
        return "leaked prompt"
    if not regex_ok(task, must_not_match=CHATTER) or not regex_ok(task, must_not_match=META):
        return "not a task"
    if echoes(task, SELF_INSTRUCT if parent is None else " | ".join([EVOLVE, *(h for h, _ in EVOLUTIONS.values())])):
        return "leaked prompt"
    if cfg.english and not looks_english(task):
        return "not English"
    if cfg.english and not is_instruction(task):  # an English-only heuristic
        return "not an instruction"
    if parent is not None and task.strip().lower() == parent.strip().lower():
        return "not evolved"
    if pool.near(task, parent):
        return "near-duplicate"
    return None


def is_instruction(task: str) -> bool:
    first = re.findall(r"[a-z]+", task.lower()[:40])
    return task.rstrip().endswith("?") or bool(first) and (first[0] in VERBS or first[0] == "please")


def _grams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z']+", re.sub(r"\{\w+\}", " | ", text.lower()))
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def echoes(task: str, prompt_template: str) -> bool:
    """Does the task repeat four words in a row of our own prompt (the model parroting its instructions)?"""
    return bool(_grams(task) & _grams(prompt_template))


def answer_problem(task: str, answer: str, cfg: SynthConfig, finish_reason: str = "stop") -> str | None:
    if not length_ok(answer, 1):
        return "empty answer"
    if finish_reason == "length":
        return "answer cut off"
    if not regex_ok(answer, must_not_match=REFUSAL):
        return "refusal"
    if answer.strip().lower() == task.strip().lower():
        return "answer repeats task"
    # answers may be numbers or code: only the script is checked, and only when there are letters
    if cfg.english and re.search(r"[^\W\d_]", answer) and not looks_english(answer, min_stopwords=0.0):
        return "not English"
    return None


def task_prompts(cfg: SynthConfig, seeds: Sequence[dict], pool: Pool,
                 rng: random.Random) -> list[tuple[str, str | None, str]]:
    """One (user prompt, parent task or None, start of the reply) per task to write this round."""
    generated = pool.tasks[len(seeds):]
    out = []
    for _ in range(cfg.batch):
        if cfg.method == "self-instruct":
            n_gen = min(2, len(generated), cfg.shots - 1)
            shown = rng.sample([s["instruction"] for s in seeds], min(cfg.shots - n_gen, len(seeds)))
            shown += rng.sample(generated, n_gen)
            rng.shuffle(shown)
            examples = "\n".join(f"{i}. {t}" for i, t in enumerate(shown, 1))
            out.append((SELF_INSTRUCT.format(examples=examples), None, ""))
        else:
            parent = rng.choice(pool.tasks)
            how, start = EVOLUTIONS[rng.choice(sorted(EVOLUTIONS))]
            stem = parent.strip().rstrip(".?!")
            verb = (re.findall(r"[A-Za-z]+", stem) or ["Write"])[0]
            out.append((EVOLVE.format(how=how, task=parent), parent, start.format(stem=stem, verb=verb)))
    return out


def _generate(engine, template, tokenizer, prompts: Sequence[str], params, starts: Sequence[str] = ()) -> list:
    """Completions of each prompt as a user turn; a non-empty start is the beginning of the reply."""
    ids = [template.render(tokenizer, [{"role": "user", "content": p}], add_generation_prompt=True)[0] for p in prompts]
    for row, start in zip(ids, starts):
        row.extend(tokenizer.encode(start) if start else [])
    return engine.generate(ids, params)


def _read_existing(path: Path) -> list[dict]:
    if not path.exists():
        return []
    from llmkit.data.chat_data import load_conversations, read_jsonl

    load_conversations(path)  # validates: a damaged file is a one-line error, never overwritten
    return [rec for _, rec in read_jsonl(path)]


def synth(out: str | Path, cfg: SynthConfig = SynthConfig(), progress: bool = False,
          on_record: Callable[[dict], None] | None = None) -> SynthReport:
    from llmkit.data.chat_data import template_for
    from llmkit.formats.loader import load_model
    from llmkit.generate import Engine, SamplingParams

    out = Path(out)
    records = _read_existing(out)
    seeds = seed_tasks(cfg.seeds)
    pool = Pool(cfg.dedup)
    for t in [s["instruction"] for s in seeds] + [r["messages"][0]["content"] for r in records]:
        pool.add(t)
    report = SynthReport(out, len(records), 0, 0)
    if len(records) >= cfg.n:
        return report
    lm = load_model(cfg.model, device="cpu", dtype="float32")
    engine, template = Engine(lm.model, lm.tokenizer), template_for(lm.tokenizer)
    bar = _bar(progress, cfg.n, len(records))
    max_rounds = cfg.max_rounds or max(20, 20 * cfg.n // cfg.batch)
    while len(records) < cfg.n and report.rounds < max_rounds:
        rng = random.Random(f"{cfg.seed}:{len(records)}:{report.rounds}")  # a re-run continues deterministically
        prompts = task_prompts(cfg, seeds, pool, rng)
        params = [SamplingParams(max_tokens=cfg.task_tokens, temperature=cfg.temperature, top_p=0.95,
                                 seed=rng.randrange(2**31)) for _ in prompts]
        tasks = []
        written = _generate(engine, template, lm.tokenizer, [p for p, _, _ in prompts], params, [s for *_, s in prompts])
        for (_, parent, start), text in zip(prompts, written):
            task = first_task(start + text.text if start else text.text)
            task = task.splitlines()[0].strip() if start else task  # a primed reply is one line
            why = task_problem(task, cfg, pool, parent)
            if why:
                report.rejected[why] += 1
                continue
            pool.add(task)  # also keeps two tasks of one batch from duplicating each other
            tasks.append((task, parent))
        if tasks:
            answer_params = SamplingParams(max_tokens=cfg.answer_tokens, temperature=0.0, repetition_penalty=1.1)
            answers = _generate(engine, template, lm.tokenizer, [t for t, _ in tasks], [answer_params] * len(tasks))
            for (task, parent), done in zip(tasks, answers):
                answer = done.text.strip()
                why = answer_problem(task, answer, cfg, done.finish_reason)
                if why:
                    report.rejected[why] += 1
                    continue
                rec = {"messages": [{"role": "user", "content": task}, {"role": "assistant", "content": answer}],
                       "method": cfg.method, **({"parent": parent} if parent else {})}
                if len(records) < cfg.n:
                    records.append(rec)
                    report.added += 1
                    bar.update(1)
                    if on_record:
                        on_record(rec)
            atomic_write_file(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        report.rounds += 1
    bar.close()
    report.kept = len(records)
    return report


def _bar(enabled: bool, total: int, done: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="synth", unit="record", disable=not enabled)
