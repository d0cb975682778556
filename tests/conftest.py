"""Shared fixtures: the packaged SmolLM2, loaded once per test session."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests convert into their own cache, never the user's ~/.cache/llmkit."""
    old = os.environ.get("LLMKIT_CACHE")
    os.environ["LLMKIT_CACHE"] = str(tmp_path_factory.mktemp("llmkit-cache"))
    yield
    if old is None:
        os.environ.pop("LLMKIT_CACHE", None)
    else:
        os.environ["LLMKIT_CACHE"] = old


@pytest.fixture(scope="session")
def smollm2():
    from llmkit.formats.loader import load_model

    return load_model("smollm2", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def hf_smollm2():
    import transformers as transformers  # a test extra: missing must fail, not skip
    import torch

    from llmkit.core.assets import asset_path

    path = asset_path("smollm2")
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                              dtype=torch.float32).eval()
    return model


@pytest.fixture(scope="session")
def gpt2_path():
    """gpt2.tiktoken via llmkit.core.assets ($LLMKIT_GPT2_TIKTOKEN or `make assets`)."""
    from llmkit.core import assets

    return assets.gpt2_ranks_path()  # `make test` runs `make assets`: missing is a failure
