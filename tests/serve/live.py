"""A real uvicorn serving runs on an ephemeral loopback port, started and stopped by the test that uses it."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import pytest

uvicorn = pytest.importorskip("uvicorn", reason="the server needs the serve extra (starlette, uvicorn)")


@contextmanager
def running(run_dirs, **settings):
    """``(base_url, server)`` of a server on 127.0.0.1:<free port>, for the duration of the block."""
    from rnnkit.serve.api import Limits
    from rnnkit.serve.app import Server, Settings, load_models

    limits = settings.pop("limits", Limits())
    cfg = Settings(host="127.0.0.1", port=0, limits=limits, **settings)
    server = Server(load_models([str(d) for d in run_dirs], cfg), cfg)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(server.app(), log_level="error", access_log=False,
                                       timeout_graceful_shutdown=1))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        server.close()
        sock.close()
