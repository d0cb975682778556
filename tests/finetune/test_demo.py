"""The demo's pure pieces: DPO pair choice, the standard error, disjoint held-out problems."""

import random

import pytest

import math

from llmkit.train.demo import paired_stderr, problems, rejected_reply, stderr


def test_rejected_is_the_most_common_wrong_reply():
    assert rejected_reply(["936", "926", " 1036", "926 "], "936") == "926"
    assert rejected_reply(["1036", "926", "936"], "936") == "1036"  # a tie: the first wrong reply seen
    assert rejected_reply(["936", " 936\n", ""], "936") is None  # always right (empty replies make no pair)


def test_stderr_of_an_accuracy():
    assert stderr(0.75, 200) == pytest.approx(0.0306, abs=1e-4)
    assert stderr(0.0, 50) == 0.0 and stderr(0.5, 0) == 0.0


def test_paired_stderr_counts_only_the_problems_that_changed():
    assert paired_stderr([1, 1, 0, 0], [1, 0, 1, 1]) == pytest.approx(math.sqrt(11 / 12) / 2)
    assert paired_stderr([1, 0, 1, 0], [1, 0, 1, 0]) == 0.0  # same answers: no noise in the change
    assert paired_stderr([True] * 100 + [False] * 100, [False] + [True] * 100 + [False] * 99) < stderr(0.5, 200)


def test_training_problems_never_include_held_out_ones():
    rng = random.Random(0)
    held = problems(200, rng)
    train = problems(2000, rng, exclude=set(held))
    assert len(set(held)) == 200 and len(set(train)) == 2000 and not set(held) & set(train)
