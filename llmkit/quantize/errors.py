"""Errors a user can cause when quantizing: bad bit widths, group sizes, calibration data."""

from __future__ import annotations

from llmkit.core.errors import LLMKitError


class QuantizationError(LLMKitError):
    """A quantization setting or calibration input that cannot be used as given."""
