"""Layer 6, the server: ``rnnkit serve RUN [RUN ...]`` serves trained runs over HTTP, an OpenAI-style
completions API with streaming (``app.py``, ``api.py``), generation batched across requests
(``engine.py``), and the playground page (``assets/``). Needs the ``serve`` extra (Starlette, uvicorn)."""

from __future__ import annotations

import socket
import sys
from typing import Sequence


def serve(run_dirs: Sequence[str], settings, *, device: str = "cpu", log_level: str = "warning") -> None:
    """Load every run (one line and no server when one fails), bind, print the address, serve until
    Ctrl-C."""
    try:
        import uvicorn
    except ImportError:
        raise ValueError("rnnkit serve needs Starlette and uvicorn: pip install 'rnnkit[serve]'") from None
    from .app import Server, load_models

    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"rnnkit: warning: serving on {settings.host}, beyond this machine: set --api-key, and "
              f"--allowed-host for each name clients use", file=sys.stderr)
    models = load_models(list(run_dirs), settings, device=device)
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {settings.host}:{settings.port} ({e.strerror or e}); "
                         f"choose another --port (0 picks a free one)") from None
    port = sock.getsockname()[1]
    server = Server(models, settings)
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"rnnkit: serving {', '.join(m.name for m in models)} on http://{shown}:{port}/ "
          f"(playground at /, API at /v1/, Ctrl-C stops)", flush=True)
    try:
        uvicorn.Server(uvicorn.Config(server.app(), log_level=log_level, access_log=False,
                                      timeout_graceful_shutdown=2)).run(sockets=[sock])
    finally:
        server.close()
        sock.close()


def command(args) -> int:
    """``rnnkit serve``: the parsed flags to a running server."""
    from .api import Limits
    from .app import Settings

    limits = Limits(max_body=args.max_body, max_tokens=args.max_tokens, max_streams=args.max_streams,
                    time_limit=args.time_limit)
    settings = Settings(host=args.host, port=args.port, allowed_hosts=tuple(args.allowed_host or ()),
                        api_key=args.api_key, batching=not args.no_batching, limits=limits)
    serve(args.runs, settings, device=args.device)
    return 0
