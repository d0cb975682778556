"""`llmkit data synth`: task parsing, filters, prompts, the generate loop (scripted), resume, and SmolLM2 end to end."""

import json
import random
from types import SimpleNamespace

import pytest

from llmkit.core.errors import ConfigError
from llmkit.data.chat_data import load_conversations
from llmkit.data.errors import DataError
from llmkit.train import synth as S
from llmkit.train.synth import Pool, SynthConfig, answer_problem, first_task, seed_tasks, task_problem, task_prompts


def test_first_task_strips_labels_and_markers():
    assert first_task("Task: Name three rivers.\n\nSure, here it is.") == "Name three rivers."
    assert first_task("7. Write a limerick about cats.") == "Write a limerick about cats."
    assert first_task('"Describe a sunset."') == "Describe a sunset."
    assert first_task("Rewritten task: List two uses of copper.") == "List two uses of copper."
    assert first_task("What is the capital of Peru?\n2. Is 20 prime?\n3. Name a bird.") == "What is the capital of Peru?"
    assert first_task("Rewrite this in French:\nThe cat sleeps.") == "Rewrite this in French:\nThe cat sleeps."


def test_task_filters_name_the_reason():
    cfg = SynthConfig()
    pool = Pool(0.7)
    pool.add("Give three tips for keeping a houseplant alive.")
    assert task_problem("Hi.", cfg, pool) == "length"
    assert task_problem("Describe the picture attached above in detail.", cfg, pool) == "not text-only"
    assert task_problem("Rewrite the task below with more steps.", cfg, pool) == "leaked prompt"
    assert task_problem("List two cats, add one more requirement to it.", cfg, pool, parent="List two cats.") == "leaked prompt"
    assert task_problem("Explique-moi comment fonctionne la photosynthèse des plantes vertes.", cfg, pool) == "not English"
    assert task_problem("Give three tips for keeping a houseplant alive!", cfg, pool) == "near-duplicate"
    assert task_problem("Give three tips for keeping a houseplant", cfg, pool) == "near-duplicate"  # contained
    evolved = "Give three tips for keeping a houseplant alive, for a cactus in a dark flat with no window."
    assert task_problem(evolved, cfg, pool, parent="Give three tips for keeping a houseplant alive.") is None
    assert task_problem("List three tips.", cfg, pool, parent="list three tips.") == "not evolved"
    assert task_problem("I'm here to help you create a movie!", cfg, pool) == "not a task"
    assert task_problem("Write a task that needs a specific style.", cfg, pool) == "not a task"
    assert task_problem("Possible things to do:", cfg, pool) == "not a task"
    assert task_problem("Some things that people give to an AI assistant are fun.", cfg, pool) == "leaked prompt"
    assert task_problem("The capital of Australia is Canberra.", cfg, pool) == "not an instruction"
    assert task_problem("Please name two rivers in Africa.", cfg, pool) is None
    assert task_problem("Explain why the sky looks blue on a clear day.", cfg, pool) is None
    assert task_problem("Explique-moi comment fonctionne la photosynthèse.", SynthConfig(english=False), pool) is None


def test_answer_filters():
    cfg = SynthConfig()
    assert answer_problem("Say hi.", "", cfg) == "empty answer"
    assert answer_problem("Say hi.", "Hello there, and welcome to the shop.", cfg, "length") == "answer cut off"
    assert answer_problem("Tell a joke.", "I'm sorry, but I cannot do that.", cfg) == "refusal"
    assert answer_problem("Say hi.", "say hi.", cfg) == "answer repeats task"
    assert answer_problem("What is 2 + 2?", "4", cfg) is None
    assert answer_problem("Write max in Python.", "def largest(xs):\n    return max(xs)", cfg) is None
    assert answer_problem("Say hi.", "Привет, как твои дела сегодня?", cfg) == "not English"


def test_prompts_mix_seed_and_generated_tasks():
    seeds = seed_tasks()
    assert len(seeds) >= 20 and all(s["instruction"] and s["output"] for s in seeds)
    pool = Pool(0.7)
    for s in seeds:
        pool.add(s["instruction"])
    pool.add("Name a generated task about volcanoes.")
    prompts = task_prompts(SynthConfig(batch=3, shots=4), seeds, pool, random.Random(0))
    assert len(prompts) == 3 and all(parent is None and start == "" for _, parent, start in prompts)
    assert all("volcanoes" in p for p, _, _ in prompts)  # the one generated task is always shown
    assert all(p.count("\n") >= 4 for p, _, _ in prompts)  # 4 numbered examples
    evol = task_prompts(SynthConfig(method="evol", batch=6), seeds, pool, random.Random(1))
    assert all(parent in pool.tasks and parent in p for p, parent, _ in evol)
    # the reply is primed with the parent's stem (in-depth) or its first word (in-breadth)
    assert all(start.startswith(parent.rstrip(".?!")) or parent.startswith(start) for _, parent, start in evol)


def test_config_errors():
    with pytest.raises(ConfigError, match="'alpaca'"):
        SynthConfig(method="alpaca")
    with pytest.raises(ConfigError, match="n=0"):
        SynthConfig(n=0)
    with pytest.raises(ConfigError, match="dedup=1.5"):
        SynthConfig(dedup=1.5)


def _scripted(monkeypatch, tasks, answers):
    """Replace the model: tasks are handed out in order, and each answer is answers[task]."""
    it = iter(tasks)

    def fake_generate(engine, template, tokenizer, prompts, params, starts=()):
        if params[0].temperature > 0:  # writing tasks
            return [SimpleNamespace(text=next(it, "Hi."), finish_reason="stop") for _ in prompts]
        return [SimpleNamespace(text=answers.get(p, "A full answer, with the reasons for it."), finish_reason="stop")
                for p in prompts]

    monkeypatch.setattr(S, "_generate", fake_generate)
    monkeypatch.setattr("llmkit.formats.loader.load_model",
                        lambda *a, **k: SimpleNamespace(model=None, tokenizer=None))
    monkeypatch.setattr("llmkit.generate.Engine", lambda *a, **k: None)
    monkeypatch.setattr("llmkit.data.chat_data.template_for", lambda tok: None)


def test_synth_loop_filters_writes_and_resumes(tmp_path, monkeypatch):
    tasks = ["Explain how a lighthouse warns ships at night.",
             "Explain how a lighthouse warns ships at night!",  # near-duplicate of the first
             "Describe the photo of the beach.",  # not text-only
             "Write a riddle whose answer is an umbrella.",
             "Give two reasons why bees matter to farmers.",
             "Summarize the plot of a heist movie you invent."]
    _scripted(monkeypatch, tasks, {"Write a riddle whose answer is an umbrella.": "I am sorry, I can't."})
    out = tmp_path / "synth.jsonl"
    rep = S.synth(out, SynthConfig(n=2, batch=3))
    assert rep.kept == 2 and rep.added == 2
    assert rep.rejected == {"near-duplicate": 1, "not text-only": 1, "refusal": 1}
    convos = load_conversations(out)  # what finetune sft reads
    assert [c[0]["content"] for c in convos] == [tasks[0], tasks[4]]
    assert all(c[1]["role"] == "assistant" and c[1]["content"] for c in convos)
    first = out.read_text()

    _scripted(monkeypatch, tasks[5:], {})  # a re-run asking for one more continues the same file
    rep = S.synth(out, SynthConfig(n=3, batch=1))
    assert rep.kept == 3 and rep.added == 1 and out.read_text().startswith(first)
    assert S.synth(out, SynthConfig(n=3)).added == 0  # already complete: nothing to do, model not loaded


def test_synth_refuses_to_overwrite_a_damaged_file(tmp_path, monkeypatch):
    out = tmp_path / "bad.jsonl"
    out.write_text('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}\n{oops\n')
    _scripted(monkeypatch, [], {})
    with pytest.raises(DataError, match="line 2"):
        S.synth(out, SynthConfig(n=5))
    assert "{oops" in out.read_text()


def test_synth_stops_after_max_rounds_when_nothing_passes(tmp_path, monkeypatch):
    _scripted(monkeypatch, [], {})  # every task is "Hi.": too short
    rep = S.synth(tmp_path / "s.jsonl", SynthConfig(n=5, batch=2, max_rounds=3))
    assert rep.kept == 0 and rep.rounds == 3 and rep.rejected == {"length": 6}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["self-instruct", "evol"])
def test_synth_with_smollm2(tmp_path, method):
    out = tmp_path / f"{method}.jsonl"
    rep = S.synth(out, SynthConfig(method=method, n=2, batch=4, answer_tokens=160, seed=1))
    assert rep.kept == 2, rep.rejected
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    seeds = {s["instruction"] for s in seed_tasks()}
    assert all(r["method"] == method and r["messages"][0]["content"] not in seeds for r in recs)
    assert (method == "evol") == all("parent" in r for r in recs)
    assert len(load_conversations(out)) == 2
