"""Generative tasks (GSM8K, NQ-open, TriviaQA, SQuAD, LAMBADA): prompts, answer matching, decoding."""

import pytest

from llmkit.eval.gen_tasks import final_number
from llmkit.eval.generative import answer_metrics, generate_answers
from llmkit.eval.tasks import load_task


@pytest.mark.parametrize("text,want", [
    (" She makes 9 * 2 = $18 every day. So the answer is 18.", "18"),
    ("So the answer is 1,250.", "1250"),
    ("The answer is $3.50 in total", "3.5"),
    ("it costs 18.00 dollars", "18"),
    ("first 3, then 4, finally -7", "-7"),
    ("So the answer is 12. Question: 99", "12"),  # strict match wins over the last number
    ("no digits here", None),
])
def test_final_number(text, want):
    assert final_number(text) == want


def test_gsm8k_fewshot_uses_the_fixed_chain_of_thought_examples():
    task = load_task("gsm8k")
    five = task.items(shots=5, limit=2)
    assert len(five) == 2 and five[0].answers == ("18",)
    prompt = five[0].contexts[0]
    assert prompt.count("Question: ") == 6 and prompt.endswith("How much in dollars does she make every day at "
                                                               "the farmers' market?\nAnswer:")
    assert prompt.startswith("Question: There are 15 trees in the grove.") and "So the answer is 6.\n\n" in prompt
    assert five[0].contexts[0].split("\n\n")[:5] == five[1].contexts[0].split("\n\n")[:5]  # same examples for all
    assert task.items(shots=0, limit=1)[0].contexts[0].startswith("Question: Janet")
    assert "Question:" in five[0].stop and len(task.docs()) == 1319


def test_qa_tasks_have_prompts_answers_and_stops():
    nq = load_task("nq_open").items(limit=1)[0]
    assert nq.contexts[0] == "Q: when was the last time anyone was on the moon?\nA:"
    assert "December 1972" in nq.answers and "\n" in nq.stop
    tq = load_task("triviaqa").items(limit=1)[0]
    assert tq.contexts[0].startswith("Question: Which Lloyd Webber musical") and "Sunset Boulevard" in tq.answers
    sq = load_task("squad").items(shots=1, limit=1)[0]
    assert sq.contexts[0].startswith("The following are reading comprehension questions")
    assert sq.contexts[0].count("Background:") == 2 and sq.answers == ("23 years", "23")
    lam = load_task("lambada").items(limit=1)[0]
    assert lam.requests()[0][1] == " signs" and lam.gold == 0


def test_answer_metrics():
    task = load_task("squad")
    item = task.items(limit=1)[0]
    assert answer_metrics(task, item, " 23 years") == {"exact_match": 1.0, "f1": 1.0}
    assert answer_metrics(task, item, "twenty-three years")["exact_match"] == 0.0
    assert 0 < answer_metrics(task, item, "about 23 years ago")["f1"] < 1
    g = load_task("gsm8k")
    gi = g.items(limit=1)[0]
    assert answer_metrics(g, gi, "9 * 2 = 18. So the answer is 18.") == {"exact_match": 1.0}
    assert answer_metrics(g, gi, "So the answer is 16.") == {"exact_match": 0.0}


def test_generation_stops_and_batching_changes_nothing(smollm2):
    task = load_task("squad")
    items = task.items(shots=1, limit=3)
    batched = generate_answers(smollm2, items, 24, batch=3)
    alone = [generate_answers(smollm2, [it], 24)[0] for it in items]
    assert batched == alone
    assert all("\n" not in a for a in batched) and any(a.strip() for a in batched)
