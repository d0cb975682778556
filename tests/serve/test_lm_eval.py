"""lm-evaluation-harness `local-completions` through the server scores like `llmkit eval` on the same items."""

import json

import lm_eval
import pytest
from lm_eval.tasks import TaskManager

from llmkit.eval.harness import evaluate_task

ITEMS = [("France", ["Paris", "Lyon", "Marseille"], 0), ("Japan", ["Osaka", "Tokyo", "Kyoto"], 1),
         ("Canada", ["Toronto", "Vancouver", "Ottawa"], 2), ("Italy", ["Milan", "Rome", "Naples"], 1),
         ("Germany", ["Berlin", "Munich", "Hamburg"], 0), ("Australia", ["Sydney", "Melbourne", "Canberra"], 2),
         ("Brazil", ["Rio de Janeiro", "Brasilia", "Sao Paulo"], 1), ("Spain", ["Madrid", "Barcelona", "Seville"], 0),
         ("Turkey", ["Istanbul", "Ankara", "Izmir"], 1), ("Egypt", ["Cairo", "Alexandria", "Giza"], 0)]


@pytest.fixture()
def task_dir(tmp_path):
    data = tmp_path / "capitals.jsonl"
    data.write_text("".join(json.dumps({"country": c, "options": o, "answer": a}) + "\n" for c, o, a in ITEMS))
    (tmp_path / "capitals_llmkit.yaml").write_text(
        "name: capitals_llmkit\ndata: capitals.jsonl\n"
        'context: "Question: What is the capital of {country}?\\nAnswer:"\nchoices: options\ngold: answer\n')
    (tmp_path / "capitals_lmeval.yaml").write_text(
        "task: capitals_lmeval\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "Question: What is the capital of {{country}}?\\nAnswer:"\n'
        'doc_to_choice: "{{options}}"\ndoc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    return tmp_path


@pytest.mark.slow
def test_local_completions_matches_llmkit_eval(live, smollm2, task_dir, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=f"base_url={live.url}/v1/completions,model=smollm2,tokenizer_backend=remote,num_concurrent=2",
        tasks=["capitals_lmeval"], task_manager=TaskManager(include_path=str(task_dir)))
    theirs = out["results"]["capitals_lmeval"]
    ours = evaluate_task(smollm2, str(task_dir / "capitals_llmkit.yaml"), progress=False)
    assert theirs["acc,none"] == pytest.approx(ours.metrics["acc"])
    assert theirs["acc_norm,none"] == pytest.approx(ours.metrics["acc_norm"])
    assert ours.metrics["acc"] > 1 / 3  # above chance (3 choices): the scores carry information
