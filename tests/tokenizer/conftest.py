"""Shared tokenizer fixtures: the SmolLM2 GGUF vocab, HF's view of it, GPT-2 ranks.

Everything heavy is session-scoped: reading the GGUF takes ~3 s and
transformers' GGUF tokenizer conversion ~8 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmkit.core import assets
from llmkit.tokenizer import Tokenizer

SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smol_gguf_path() -> Path:
    return assets.asset_path("smollm2")  # installed by `make test`


@pytest.fixture(scope="session")
def smol_fields(smol_gguf_path) -> dict:
    import gguf as gguf  # a test extra: missing must fail, not skip
    reader = gguf.GGUFReader(str(smol_gguf_path))
    keys = ["tokens", "merges", "token_type", "pre", "bos_token_id", "eos_token_id", "padding_token_id"]
    fields = {k: reader.fields[f"tokenizer.ggml.{k}"].contents() for k in keys}
    fields["chat_template"] = reader.fields["tokenizer.chat_template"].contents()
    return fields


def _smol(fields: dict, backend: str) -> Tokenizer:
    return Tokenizer.from_vocab(fields["tokens"], fields["merges"], fields["token_type"], fields["pre"],
                                bos_id=fields["bos_token_id"], eos_id=fields["eos_token_id"],
                                pad_id=fields["padding_token_id"], backend=backend,
                                chat_template=fields["chat_template"])


@pytest.fixture(scope="session")
def smol(smol_fields) -> Tokenizer:
    tok = _smol(smol_fields, "auto")
    assert tok.backend == "tiktoken"  # SmolLM2 must take the fast path by default
    return tok


@pytest.fixture(scope="session")
def smol_ref(smol_fields) -> Tokenizer:
    return _smol(smol_fields, "python")


@pytest.fixture(scope="session")
def hf_smol_gguf(smol_gguf_path):
    """transformers' own tokenizer built from the GGUF (pre-tokenizer as its loader chooses)."""
    import transformers as transformers  # a test extra: missing must fail, not skip
    return transformers.AutoTokenizer.from_pretrained(str(smol_gguf_path.parent), gguf_file=SMOL_FILE)


@pytest.fixture(scope="session")
def hf_smol(hf_smol_gguf):
    """The same HF tokenizer with SmolLM2's published pre-tokenizer.

    SmolLM2's hub tokenizer.json (and llama.cpp's "smollm" pre-type) split
    digits first: Sequence[Digits(individual_digits=True), ByteLevel]. The
    transformers GGUF loader does not know "smollm" and uses plain ByteLevel,
    which differs on whitespace before digits ("  1"). We put the Digits step
    back and compare to that; test_smollm_parity documents the difference.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import pre_tokenizers

    backend = HFTokenizer.from_str(hf_smol_gguf.backend_tokenizer.to_str())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    return backend


