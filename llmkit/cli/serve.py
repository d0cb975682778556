"""`llmkit serve`: argument parsing; the work is llmkit.serve.api.serve."""

from __future__ import annotations

import argparse


def cmd_serve(a: argparse.Namespace) -> None:
    from llmkit.serve.api import serve
    from llmkit.serve.state import ServeConfig

    cfg = ServeConfig(host=a.host, port=a.port, api_key=a.api_key, max_batch=a.max_batch, max_queue=a.max_queue,
                      max_n=a.max_n, max_body_bytes=a.max_body_bytes, cors_origins=a.cors_origin,
                      served_name=a.served_name, chat_template=a.template,
                      embedder=None if a.embedder == "none" else a.embedder, speculative=a.speculative)
    hooks = None
    if a.guard:  # composed here: serve sits below guard in the layers
        from llmkit.guard import Guard
        from llmkit.guard.wiring import chat_hooks, redact_logs

        guard = Guard()
        hooks = chat_hooks(guard)
        redact_logs(guard)
    serve(a.model, cfg, device=a.device, dtype=a.dtype, log_level=a.log_level, hooks=hooks, draft=a.draft,
          weights=a.weights)


def register(sub) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server with continuous batching and a chat page",
                       description="Serve a model over the OpenAI API (/v1/completions, /v1/chat/completions, "
                                   "/v1/models, /v1/embeddings, /tokenize, /metrics, ...) with a web chat page at /.")
    p.add_argument("--model", "-m", default="smollm2",
                   help="packaged name, .gguf file, llmkit checkpoint or HF directory (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (or set LLMKIT_API_KEY)")
    p.add_argument("--max-batch", type=int, default=16, help="requests decoded together (default %(default)s)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting before 429 (default %(default)s)")
    p.add_argument("--max-n", type=int, default=8, help="most choices per request (default %(default)s)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="request body limit (default %(default)s)")
    p.add_argument("--cors-origin", action="append", default=[], help="allow this browser origin (repeatable; * for any)")
    p.add_argument("--served-name", default=None, help="model id clients send (default: the model's name)")
    p.add_argument("--template", default=None, help="override the chat template: chatml, llama3 or alpaca")
    p.add_argument("--embedder", default="minilm",
                   help="model for /v1/embeddings, loaded on first use: minilm (the packaged all-MiniLM-L6-v2), "
                        "a sentence-transformers BERT directory, or none (default %(default)s)")
    p.add_argument("--speculative", type=int, default=4, metavar="K",
                   help="speculative decoding: guess up to K tokens per step while one request runs alone, "
                        "verified in one forward, so outputs are unchanged (0: off; default %(default)s)")
    p.add_argument("--draft", default=None, metavar="MODEL",
                   help="a smaller model with the same tokenizer that makes the guesses "
                        "(default: prompt lookup, i.e. copying what followed the last n-gram in the context)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default %(default)s)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    from llmkit.cli.main import weights_arg

    weights_arg(p, default="float")  # batches above 16 rows would re-expand packed layers every step
    p.add_argument("--log-level", default="info", help="uvicorn log level (default %(default)s)")
    p.add_argument("--guard", action="store_true",
                   help="prompt-injection defences on /v1/chat/completions: tool results and parts marked "
                        "untrusted spotlighted, hierarchy system prompt, detector, canary check, PII redaction "
                        "in replies and logs (docs/security.md)")
    p.set_defaults(func=cmd_serve)
