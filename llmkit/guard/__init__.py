"""llmkit.guard: prompt-injection defences, PII redaction, canary leak checks, red-team probes."""

from llmkit.guard.guard import Guard, GuardConfig, InjectionDetectedError, OutputBlockedError

__all__ = ["Guard", "GuardConfig", "InjectionDetectedError", "OutputBlockedError"]
