"""Evaluation metrics as small pure functions.

    accuracy([1, 0, 2], [1, 1, 2])            -> 0.666...
    acc_norm_choice([-4.0, -6.0], ["ab", "abcdef"]) -> 1   # -6/6 beats -4/2
    exact_match("The Cat!", ["cat"])          -> 1.0       # SQuAD normalisation
    corpus_bleu(["the cat sat"], [["the cat sat"]])  -> 0..100, sacrebleu's scale
"""

from __future__ import annotations

import math
import random
import re
import string
from collections import Counter

from llmkit.core.stats import mean_stderr  # noqa: F401  (re-exported: the harness and tests use it from here)

# ---- multiple choice -----------------------------------------------------------------------


def accuracy(preds: list[int], golds: list[int]) -> float:
    assert len(preds) == len(golds) and preds, "need equal, non-empty lists"
    return sum(int(p == g) for p, g in zip(preds, golds)) / len(preds)


def argmax(values: list[float]) -> int:
    """First index of the maximum (ties go to the earlier choice, like numpy.argmax)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def acc_norm_choice(logliks: list[float], choices: list[str], unit: str = "chars") -> int:
    """argmax of loglik / length(choice). lm-eval divides by len(choice) in characters,
    choice text *without* the leading delimiter; ``unit="bytes"`` uses UTF-8 bytes."""
    assert len(logliks) == len(choices)
    lengths = [len(c.encode("utf-8")) if unit == "bytes" else len(c) for c in choices]
    return argmax([ll / max(n, 1) for ll, n in zip(logliks, lengths)])


# ---- answers (SQuAD-style) -----------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and articles, squeeze whitespace (the SQuAD script's steps)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: list[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(a) for a in answers))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)  # both empty counts as a match
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: list[str]) -> float:
    """Bag-of-tokens F1 after normalisation, best over the accepted answers."""
    pred = normalize_answer(prediction).split()
    return max(_f1(pred, normalize_answer(a).split()) for a in answers)


# ---- BLEU ----------------------------------------------------------------------------------

_13A_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # punctuation and symbols become tokens
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma unless preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # ... unless followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash after a digit
]


def tokenize_13a(line: str) -> list[str]:
    """mteval-v13a-style tokenisation (sacrebleu's default)."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, repl in _13A_RULES:
        line = pattern.sub(repl, line)
    return line.split()


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses: list[str], references: list[list[str]], max_n: int = 4) -> float:
    """Corpus BLEU (0-100): clipped n-gram precisions pooled over the corpus, geometric mean,
    brevity penalty against the closest reference length; zero-match orders use 'exp' smoothing.

    ``references[i]`` lists the references of hypothesis i.
    """
    assert len(hypotheses) == len(references) and hypotheses
    correct, total = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        h = tokenize_13a(hyp)
        rs = [tokenize_13a(r) for r in refs]
        hyp_len += len(h)
        # closest reference length, the shorter one on a tie
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        for n in range(1, max_n + 1):
            max_ref = Counter()
            for r in rs:
                max_ref |= _ngrams(r, n)
            hyp_ngrams = _ngrams(h, n)
            correct[n - 1] += sum(min(c, max_ref[g]) for g, c in hyp_ngrams.items())
            total[n - 1] += max(len(h) - n + 1, 0)
    if correct[0] == 0:
        return 0.0  # not one unigram matches: no smoothing rescues it (sacrebleu agrees)
    log_sum, smooth = 0.0, 1.0
    for n in range(max_n):
        if total[n] == 0 or hyp_len == 0:
            return 0.0  # no n-grams of this order at all: BLEU is 0
        if correct[n] == 0:
            smooth *= 2  # 'exp' smoothing: 1/2, 1/4, ... of a match for each empty order
            precision = 100.0 / (smooth * total[n])
        else:
            precision = 100.0 * correct[n] / total[n]
        log_sum += math.log(precision)
    bp = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(log_sum / max_n)


# ---- ROUGE-L -------------------------------------------------------------------------------


def _rouge_tokens(text: str) -> list[str]:
    # rouge-score's default tokenizer: lower case, non-alphanumerics become spaces, no stemming
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def lcs_length(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure from the longest common subsequence of tokens."""
    p, r = _rouge_tokens(prediction), _rouge_tokens(reference)
    if not p or not r:
        return 0.0
    lcs = lcs_length(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


# ---- uncertainty ---------------------------------------------------------------------------


def bootstrap_stderr(values: list[float], iters: int = 1000, seed: int = 1234) -> float:
    """Standard deviation of the mean over ``iters`` resamples with replacement."""
    n = len(values)
    if n < 2:
        return float("nan")
    rng = random.Random(seed)
    means = [sum(rng.choices(values, k=n)) / n for _ in range(iters)]
    return mean_stderr(means) * math.sqrt(iters)
