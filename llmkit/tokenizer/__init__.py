"""L1 tokenizer: byte-level BPE (reference + tiktoken engines) and chat templates.

Imports only llmkit.core and third-party libraries; never model code.
"""

from llmkit.tokenizer.bpe import Tokenizer
from llmkit.tokenizer.chat import ChatTemplate

__all__ = ["ChatTemplate", "Tokenizer"]
