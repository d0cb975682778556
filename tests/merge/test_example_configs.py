"""The example configs in configs/merge parse (models are not opened: they need the bench's fine-tune)."""

from pathlib import Path

import pytest

import llmkit
from llmkit.merge.config import MergeConfig, read_yaml
from llmkit.merge.moe import MoEConfig
from llmkit.merge.run import read_config

EXAMPLES = sorted((Path(llmkit.__file__).parent / "configs" / "merge").glob("*.yaml"))


def test_there_are_examples():
    assert {p.stem for p in EXAMPLES} >= {"linear", "slerp", "ties", "dare_ties", "passthrough", "moe"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_parses(path):
    cfg = read_config(read_yaml(path))
    if path.stem == "moe":
        assert isinstance(cfg, MoEConfig) and len(cfg.experts) == 2
    else:
        assert isinstance(cfg, MergeConfig) and cfg.method == path.stem
