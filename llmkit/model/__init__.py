"""L1: the model. Pure PyTorch, a function of token ids; knows nothing about strings."""

from llmkit.model.config import PRESETS, ModelConfig, preset
from llmkit.model.kv_cache import KVCache
from llmkit.model.transformer import Transformer

__all__ = ["PRESETS", "KVCache", "ModelConfig", "Transformer", "preset"]
