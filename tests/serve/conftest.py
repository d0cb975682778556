"""A live server on loopback (uvicorn in a thread) over the packaged SmolLM2, shared by the serve tests."""

import socket
import threading
import time

import pytest
import uvicorn

from llmkit.serve.app import create_app
from llmkit.serve.state import ServeConfig

API_KEY = "sk-test-llmkit"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, app):
        self.port = free_port()
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def state(self):
        return self.app.state.llmkit


@pytest.fixture(scope="session")
def live(smollm2):
    """No API key; small limits so the limit tests are cheap."""
    app = create_app(smollm2, ServeConfig(max_batch=4, max_queue=4, max_n=3, max_body_bytes=64 << 10,
                                          served_name="smollm2", cors_origins=["http://example.test"]))
    with LiveServer(app) as srv:
        yield srv


@pytest.fixture(scope="session")
def live_keyed(smollm2):
    app = create_app(smollm2, ServeConfig(api_key=API_KEY, served_name="smollm2"))
    with LiveServer(app) as srv:
        yield srv
