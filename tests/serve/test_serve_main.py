"""`llmkit.serve.api.serve`: HTTP on a helper thread, the model on the caller's thread, clean stops."""

import os
import signal
import socket
import threading
import time

import httpx
import pytest

from llmkit.core.errors import ConfigError
from llmkit.generate.scheduler import Scheduler
from llmkit.serve.api import serve
from llmkit.serve.state import ServeConfig

from .conftest import free_port


def test_serve_decodes_on_the_calling_thread_and_stops_on_sigint(smollm2, monkeypatch):
    seen, out = set(), {}
    step = Scheduler.step

    def recording_step(self):
        seen.add(threading.current_thread().name)
        return step(self)

    monkeypatch.setattr(Scheduler, "step", recording_step)
    port = free_port()

    def client():
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
                for _ in range(300):
                    try:
                        if c.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                body = {"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0}
                out["reply"] = c.post("/v1/completions", json=body).json()
                emb = {"model": "all-MiniLM-L6-v2", "input": "hello"}
                out["embedding"] = c.post("/v1/embeddings", json=emb).json()
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    helper = threading.Thread(target=client)
    helper.start()
    serve(smollm2, ServeConfig(port=port), log_level="warning")  # returns once SIGINT arrives
    helper.join(30)
    assert out["reply"]["usage"]["completion_tokens"] == 5
    assert len(out["embedding"]["data"][0]["embedding"]) == 384
    assert seen == {threading.main_thread().name}  # every decode step ran here, none on a helper thread


def test_serve_on_a_taken_port_is_a_typed_error(smollm2):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            serve(smollm2, ServeConfig(port=port, embedder=None), log_level="critical")
