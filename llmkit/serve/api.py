"""`llmkit serve` as a Python function."""

from __future__ import annotations

from llmkit.core.errors import ConfigError
from llmkit.formats.loader import LoadedModel, load_model
from llmkit.serve.state import ChatHooks, ServeConfig


def serve(model: str | LoadedModel = "smollm2", config: ServeConfig | None = None, device: str = "auto",
          dtype: str = "auto", log_level: str = "info", hooks: ChatHooks | None = None,
          draft: str | LoadedModel | None = None) -> None:
    """Load `model` and answer the OpenAI API on config.host:config.port until interrupted
    (``hooks``: optional chat-content hooks, e.g. llmkit.guard's; ``draft``: a same-tokenizer
    model whose guesses speed up decoding, instead of prompt lookup)."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("uvicorn is not installed", "pip install 'llmkit[serve]'") from None
    from llmkit.serve.app import create_app

    config = config or ServeConfig()
    spec = model if isinstance(model, str) else None
    lm = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
    if isinstance(draft, str):
        draft = load_model(draft, device=device, dtype=dtype)
    app = create_app(lm, config, spec, hooks, draft)
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level, timeout_graceful_shutdown=5)
