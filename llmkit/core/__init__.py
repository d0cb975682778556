"""L0: configs, errors, runtime, assets, checkpoint I/O. Imports nothing else from llmkit."""

from llmkit.core.errors import (
    AssetMissingError, CheckpointError, ConfigError, ContextOverflowError, FormatError,
    GenerationError, LLMKitError, ModelNotFoundError, TemplateError, TokenizerError,
)

__all__ = [
    "AssetMissingError", "CheckpointError", "ConfigError", "ContextOverflowError", "FormatError",
    "GenerationError", "LLMKitError", "ModelNotFoundError", "TemplateError", "TokenizerError",
]
