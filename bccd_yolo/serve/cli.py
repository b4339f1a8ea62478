"""`bccd-yolo serve`: its flags and the command; FastAPI and uvicorn are imported only when it runs."""

from __future__ import annotations

import argparse
import ctypes
import socket
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from .settings import DEFAULT_MAX_UPLOAD_MB, ServeSettings, is_loopback


def add_serve(sub: Any) -> None:
    """The `serve` subcommand on the CLI's subparsers."""
    p = sub.add_parser("serve", help="a local web page to count images, for users who do not use a terminal")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; any other than 127.0.0.1/localhost needs the token printed at start")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--weights", type=Path, default=None, help="model checkpoint (default: the shipped model)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help="largest request the page accepts, all files together, in MB (10^6 bytes)")
    p.set_defaults(func=cmd_serve)


def one_malloc_arena() -> bool:
    """glibc gives each thread that allocates its own heap (up to 8 per core), and the page counts on threads of
    its own: a 10,000 px slide then peaked at 727 MB in a fresh server against 673 MB in `count`; with one heap,
    658-692 MB against 672-674 MB (benchmarks/serve_speed.py). Counts run one at a time, so nothing waits on the lock."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, 1))  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the page and serve until Ctrl-C."""
    try:
        import uvicorn

        from .app import create_app
    except ImportError as e:
        raise InputError(None, f"serve needs FastAPI and uvicorn ({e.name} is missing): pip install 'bccd-yolo[serve]'") from None
    if args.weights is not None and not args.weights.is_file():
        raise InputError(args.weights, "weights file not found")
    if args.max_upload_mb <= 0:
        raise InputError(None, f"{args.max_upload_mb:g}: must be more than 0", option="max_upload_mb")
    settings = ServeSettings(weights=args.weights, host=args.host, port=args.port,
                             max_upload_bytes=int(args.max_upload_mb * 1e6))
    shown = socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host  # every interface: name one
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{args.port}/" + (f"?token={settings.token}" if settings.token else "")
    if not is_loopback(args.host):
        print(f"listening on {args.host}, reachable from other machines: share this address, token included")
    print(f"bccd-yolo serve: open {url} (Ctrl-C stops it and deletes the uploads)", flush=True)
    one_malloc_arena()
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
    return 0
