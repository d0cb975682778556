"""The user-facing error hierarchy.

Every error a user can cause is an ``LLMKitError``: it names the bad value and
says how to fix it. The CLI prints ``str(err)`` on one line and exits 1; the
server maps ``status`` to an HTTP code. Internal invariants use ``assert``.
"""

from __future__ import annotations


class LLMKitError(Exception):
    """Base class. ``fix`` is appended to the message as a hint."""

    status = 400  # HTTP status when raised inside the server

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message} — {fix}")


class ConfigError(LLMKitError):
    """Unknown config keys, bad values, unknown presets."""


class AssetMissingError(LLMKitError):
    """A packaged asset (model, data) is not installed."""

    status = 404


class ModelNotFoundError(LLMKitError):
    """A model path or name that does not resolve to anything loadable."""

    status = 404


class FormatError(LLMKitError):
    """A file that is truncated, corrupted or of an unsupported kind."""


class CheckpointError(LLMKitError):
    """A checkpoint directory that cannot be read or written."""


class TokenizerError(LLMKitError):
    """Bad tokenizer input: disallowed special tokens, unknown ids, bad files."""


class TemplateError(LLMKitError):
    """A chat template that fails to render or a malformed conversation."""


class ContextOverflowError(LLMKitError):
    """A prompt plus requested tokens that do not fit the model's context."""


class GenerationError(LLMKitError):
    """Bad sampling parameters or generation requests."""
