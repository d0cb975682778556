import types

import pytest
import torch

from llmkit.model import Transformer, preset
from tests.generate.conftest import ByteTokenizer


class ChatByteTokenizer(ByteTokenizer):
    chat_template = None  # -> the built-in ChatML template


@pytest.fixture(scope="session")
def random_lm():
    """A randomly initialised 2-layer model over bytes: it writes noise unless a grammar holds it."""
    torch.manual_seed(0)
    cfg = preset("tiny-llama").replace(vocab_size=300, n_layer=2, d_model=64, max_seq_len=4096)
    model = Transformer(cfg).init_weights(seed=0).eval()
    return types.SimpleNamespace(model=model, tokenizer=ChatByteTokenizer(), name="random-bytes")
