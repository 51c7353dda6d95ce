"""`stic serve`: run the local web page (see stic.serve)."""

from __future__ import annotations

import argparse
import importlib.util
import socket
import sys
import webbrowser

from stic.errors import InputError

#: what the page needs beyond stic's own dependencies (the `serve` extra)
NEEDED = {"starlette": "starlette", "uvicorn": "uvicorn", "multipart": "python-multipart"}


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, opened before any model or web code loads, so a taken port or an
    unknown host fails at once."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as err:
        raise InputError(f"cannot listen on host {host!r}: {err.strerror}") from err
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {err.strerror} (give another --port)") from err
    sock.listen(64)
    return sock


def _cmd_serve(args) -> None:
    missing = [package for module, package in NEEDED.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise InputError(f"stic serve needs {', '.join(missing)}: pip install 'stic[serve]'")
    sock = _bind(args.host, args.port)
    import uvicorn

    from stic.serve.app import create_app

    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    if not socket.getaddrinfo(host, None)[0][4][0].startswith(("127.", "::1")):
        print(f"stic: warning: listening on {host}: anyone who can reach this machine can use the page", file=sys.stderr)
    print(f"stic: serving {url} (Ctrl+C stops)", file=sys.stderr, flush=True)
    if args.open:
        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning"))
    server.run(sockets=[sock])


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="a local web page: drop a photo, compare stic with AVIF and JPEG of the same size, decode .stic files",
        description="Serve a web page on this machine: drop a photo, pick a target bpp or a quality, and see the "
        "original, stic's decode and AVIF and JPEG files of the same byte count side by side (slider and zoom), with "
        "sizes and the caption; download the .stic; drop a .stic file to decode it.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=_port, default=8000, help="port to listen on; 0 picks a free one (default: 8000)")
    parser.add_argument("--open", action="store_true", help="open the page in the default web browser")
    parser.set_defaults(func=_cmd_serve)
