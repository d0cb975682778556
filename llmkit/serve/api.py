"""`llmkit serve` as a Python function."""

from __future__ import annotations

import signal
import threading

from llmkit.core.errors import ConfigError
from llmkit.formats.loader import LoadedModel, keep_quantized_for, load_model
from llmkit.serve.state import ChatHooks, ServeConfig


def serve(model: str | LoadedModel = "smollm2", config: ServeConfig | None = None, device: str = "auto",
          dtype: str = "auto", log_level: str = "info", hooks: ChatHooks | None = None,
          draft: str | LoadedModel | None = None, weights: str = "float") -> None:
    """Load `model` and answer the OpenAI API on config.host:config.port until interrupted
    (``hooks``: optional chat-content hooks, e.g. llmkit.guard's; ``draft``: a same-tokenizer
    model whose guesses speed up decoding, instead of prompt lookup; ``weights``: auto, packed or float,
    how a quantized GGUF runs, see ``llmkit.formats.loader.packed_by_default``)."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("uvicorn is not installed", "pip install 'llmkit[serve]'") from None
    from llmkit.serve.app import create_app

    config = config or ServeConfig()
    spec = model if isinstance(model, str) else None
    keep = keep_quantized_for(weights)
    lm = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype, keep_quantized=keep)
    if isinstance(draft, str):
        draft = load_model(draft, device=device, dtype=dtype, keep_quantized=keep)
    app = create_app(lm, config, spec, hooks, draft)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                                           timeout_graceful_shutdown=5))
    # HTTP in a thread, the model in this one: the thread that loaded the weights keeps doing all
    # the math, so the process has one OpenMP team (see llmkit.generate.scheduler)
    sched = app.state.llmkit.scheduler.hold()  # before the app's startup could start a thread of its own
    web = threading.Thread(target=_run_http, args=(server,), name="llmkit-http", daemon=True)
    web.start()
    # uvicorn cannot catch signals off the main thread; Ctrl-C or SIGTERM end the loop here instead
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        sched.run(keep_going=web.is_alive)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.should_exit = True
        web.join(timeout=10)
    if not server.started:
        raise ConfigError(f"could not serve on {config.host}:{config.port} (uvicorn's log above says why)",
                          "pick a free port with --port, or stop the process that holds it")


def _run_http(server) -> None:
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind; serve() reports it as a typed error
        pass


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
