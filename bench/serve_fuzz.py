"""Schemathesis against the server's own OpenAPI schema (property-based fuzzing), one run.

    python bench/serve_fuzz.py [--max-examples 30]

The server runs a tiny random model (2 layers, d=64) with SmolLM2's real tokenizer
and chat template, so thousands of generated requests finish quickly; the HTTP
layer, validation and error paths are the same as with any model. Schemathesis
checks every response against the schema and that no request causes a 5xx.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-examples", type=int, default=30)
    a = ap.parse_args()

    import uvicorn

    from llmkit.formats.loader import LoadedModel, load_model
    from llmkit.model import Transformer, preset
    from llmkit.serve.app import create_app
    from llmkit.serve.state import ServeConfig
    from serve import free_port  # bench/serve.py

    real = load_model("smollm2", device="cpu", dtype="float32")
    cfg = preset("tiny-llama").replace(vocab_size=real.config.vocab_size, n_layer=2, d_model=64, max_seq_len=256)
    tiny = LoadedModel(Transformer(cfg).init_weights(seed=0).eval(), real.tokenizer, cfg, "tiny", real.path,
                       {"name": "tiny"})
    app = create_app(tiny, ServeConfig(served_name="tiny", max_n=4))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    cmd = ["st", "run", f"http://127.0.0.1:{port}/openapi.json", "--checks", "all", "-n", str(a.max_examples),
           "--workers", "1"]
    print(" ".join(cmd), flush=True)
    code = subprocess.call(cmd)
    server.should_exit = True
    sys.exit(code)


if __name__ == "__main__":
    main()
