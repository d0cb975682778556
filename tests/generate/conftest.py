import pytest
import torch

from llmkit.model import Transformer, preset


class ByteTokenizer:
    """A minimal tokenizer for engine tests: ids 0..255 are bytes, then specials."""

    def __init__(self, vocab_size: int = 300):
        self.vocab_size = vocab_size
        self.special_tokens = {"<|endoftext|>": 256, "<|im_end|>": 257}
        self.eos_id, self.bos_id, self.pad_id = 256, None, None

    def token_bytes(self, i: int) -> bytes:
        return bytes([i]) if i < 256 else b""

    def is_special(self, i: int) -> bool:
        return i >= 256

    def encode(self, text: str, allowed_special="none") -> list[int]:
        return list(text.encode())

    def decode(self, ids) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", "replace")


@pytest.fixture(scope="session")
def tiny_model():
    torch.manual_seed(0)
    cfg = preset("tiny-llama").replace(vocab_size=300, n_layer=2, d_model=64, max_seq_len=128)
    return Transformer(cfg).init_weights(seed=0).eval()


@pytest.fixture(scope="session")
def byte_tok():
    return ByteTokenizer()
