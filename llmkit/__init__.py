"""llmkit: the whole LLM lifecycle in one readable, tested package.

The most used entry points, importable from the top (loaded lazily so that
``import llmkit.core`` stays light):

    import llmkit
    lm = llmkit.load_model("smollm2")
    print(llmkit.generate_text("What is the capital of France?", model=lm, chat=True).text)
"""

__version__ = "0.1.0"

_LAZY = {
    "load_model": ("llmkit.formats.loader", "load_model"),
    "save_model": ("llmkit.formats.loader", "save_model"),
    "convert": ("llmkit.formats.convert", "convert"),
    "info": ("llmkit.formats.convert", "info"),
    "generate_text": ("llmkit.generate.api", "generate_text"),
    "Engine": ("llmkit.generate.engine", "Engine"),
    "SamplingParams": ("llmkit.generate.sampling", "SamplingParams"),
    "Tokenizer": ("llmkit.tokenizer", "Tokenizer"),
    "ChatTemplate": ("llmkit.tokenizer", "ChatTemplate"),
    "Transformer": ("llmkit.model", "Transformer"),
    "ModelConfig": ("llmkit.model", "ModelConfig"),
    "LLMKitError": ("llmkit.core.errors", "LLMKitError"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'llmkit' has no attribute {name!r}")
