import math
import random

import pytest

from llmkit.eval import metrics as M

SENTENCES = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog!",
    "It costs $3.50, or 3,000 yen - roughly.",
    "He said: \"don't go\" & left (quietly) at 10-15.",
    "the the the the",
    "Models learn from data; data is never perfect.",
    "short",
    "E-mail me at a.b@c.com, please.",
]


def _perturb(s, rng):
    words = s.split()
    if len(words) > 2 and rng.random() < 0.5:
        del words[rng.randrange(len(words))]
    if rng.random() < 0.5:
        words.insert(rng.randrange(len(words) + 1), rng.choice(["cat", "the", "data", "quickly"]))
    return " ".join(words)


@pytest.mark.parametrize("seed", range(6))
def test_corpus_bleu_matches_sacrebleu(seed):
    import sacrebleu as sacrebleu  # a test extra: missing must fail, not skip
    rng = random.Random(seed)
    refs = rng.sample(SENTENCES, 5)
    hyps = [_perturb(r, rng) for r in refs]
    refs2 = [_perturb(r, rng) for r in refs]
    want = sacrebleu.corpus_bleu(hyps, [refs]).score
    assert M.corpus_bleu(hyps, [[r] for r in refs]) == pytest.approx(want, abs=1e-9)
    want2 = sacrebleu.corpus_bleu(hyps, [refs, refs2]).score  # two reference streams
    assert M.corpus_bleu(hyps, [list(p) for p in zip(refs, refs2)]) == pytest.approx(want2, abs=1e-9)


def test_bleu_edge_cases_match_sacrebleu():
    import sacrebleu as sacrebleu  # a test extra: missing must fail, not skip
    for hyps, refs in [(["completely different words here"], ["the cat sat on the mat"]), (["cat"], ["the cat sat"]),
                       (["the cat sat on the mat"], ["the cat sat on the mat"])]:
        assert M.corpus_bleu(hyps, [[r] for r in refs]) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)


def test_tokenize_13a_matches_sacrebleu():
    import sacrebleu  # noqa: F401  (a test extra)
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tok = Tokenizer13a()
    for s in SENTENCES:
        assert M.tokenize_13a(s) == tok(s).split()


def test_rouge_l_matches_rouge_score():
    import rouge_score.rouge_scorer as rouge_scorer  # a test extra: missing must fail, not skip
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rng = random.Random(0)
    for ref in SENTENCES:
        pred = _perturb(ref, rng)
        want = scorer.score(ref, pred)["rougeL"].fmeasure
        assert M.rouge_l(pred, ref) == pytest.approx(want, abs=1e-12)
    assert M.rouge_l("", "a b") == scorer.score("a b", "")["rougeL"].fmeasure == 0.0


def test_accuracy_and_acc_norm():
    assert M.accuracy([1, 0, 2], [1, 1, 2]) == pytest.approx(2 / 3)
    assert M.argmax([-4.0, -6.0]) == 0
    assert M.acc_norm_choice([-4.0, -6.0], ["ab", "abcdef"]) == 1  # -1.0 beats -2.0
    assert M.acc_norm_choice([-4.0, -4.5], ["é", "ab"], unit="chars") == 1
    assert M.acc_norm_choice([-4.0, -4.5], ["éé", "ab"], unit="bytes") == 0  # 4 bytes vs 2


def test_exact_match_and_f1_squad_normalisation():
    assert M.normalize_answer("The  Cat, sat!") == "cat sat"
    assert M.exact_match("the Eiffel Tower.", ["Eiffel tower", "Paris"]) == 1.0
    assert M.exact_match("Tower", ["Eiffel tower"]) == 0.0
    assert M.token_f1("Eiffel", ["Eiffel tower"]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert M.token_f1("nothing", ["Eiffel tower", "nothing here"]) == pytest.approx(2 / 3)
    assert M.token_f1("", [""]) == 1.0


def test_stderr():
    vals = [1.0, 0.0, 1.0, 1.0]
    assert M.mean_stderr(vals) == pytest.approx(math.sqrt(0.25 / 4))  # sample var 0.25
    assert math.isnan(M.mean_stderr([1.0]))
    boot = M.bootstrap_stderr([float(i % 2) for i in range(200)], iters=500)
    assert boot == pytest.approx(M.mean_stderr([float(i % 2) for i in range(200)]), rel=0.2)
