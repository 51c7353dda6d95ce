"""The Starlette application behind `stic serve`.

Starlette rather than Gradio: the page is one static HTML file with a little JavaScript, so the
server needs routing, multipart uploads and a thread pool, nothing more (Gradio brings its own
front-end build and ~100 MB of dependencies). Coding runs one request at a time in a worker thread
(the models are shared and the machine's cores are already used by one coding job); results are
kept in memory for the last few requests only.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from stic.errors import InputError, SticError
from stic.serve.work import Outcome, compress, decompress

STATIC = Path(__file__).parent / "static"
#: largest upload accepted: a 200 MP photo as JPEG, or a large PNG
MAX_UPLOAD_BYTES = 128 * 1024 * 1024
#: results kept for their images and downloads (oldest dropped first)
KEPT_RESULTS = 8
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".avif": "image/avif", ".stic": "application/octet-stream"}

log = logging.getLogger("stic.serve")


class _Results:
    """The last KEPT_RESULTS outcomes, by an unguessable id."""

    def __init__(self):
        self._items: OrderedDict[str, Outcome] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, outcome: Outcome) -> str:
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._items[key] = outcome
            while len(self._items) > KEPT_RESULTS:
                self._items.popitem(last=False)
        return key

    def file(self, key: str, name: str) -> bytes | None:
        with self._lock:
            outcome = self._items.get(key)
        return None if outcome is None else outcome.files.get(name)


def _number(form, key: str, kind: type, low: float, what: str):
    text = (form.get(key) or "").strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise InputError(f"{what} must be a number, not {text!r}") from None
    if not value >= low:
        raise InputError(f"{what} must be at least {low}, not {text}")
    return value


async def _upload(request: Request, field: str, what: str) -> tuple[bytes, str, object]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise _TooLarge()
    form = await request.form(max_files=1, max_fields=16)
    upload = form.get(field)
    if upload is None or isinstance(upload, str):
        raise InputError(f"no {what} in the upload")
    data = await upload.read()
    if len(data) > MAX_UPLOAD_BYTES:
        raise _TooLarge()
    if not data:
        raise InputError(f"{upload.filename or 'the upload'} is empty")
    # the name goes into messages and download names: keep it plain
    name = re.sub(r"[^\w.-]+", "_", Path(upload.filename or "").name).strip("._") or "upload"
    return data, name, form


class _TooLarge(Exception):
    pass


def create_app() -> Starlette:
    results = _Results()
    work_lock = threading.Lock()  # one coding job at a time: models are shared, cores are few

    def run_locked(function, *args, **kwargs) -> Outcome:
        with work_lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outcome = function(*args, **kwargs)
        outcome.report["warnings"] = sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
        return outcome

    async def respond(job) -> JSONResponse:
        try:
            outcome = await job()
        except _TooLarge:
            return JSONResponse({"error": f"upload too large (at most {MAX_UPLOAD_BYTES // 2**20} MB)"}, 413)
        except SticError as err:
            return JSONResponse({"error": str(err)}, 400)
        except Exception as err:  # a bug: keep the server up, log the traceback, say so
            log.exception("request failed")
            return JSONResponse({"error": f"internal error ({type(err).__name__}: {err}); see the server's log"}, 500)
        return JSONResponse({"id": results.add(outcome), **outcome.report})

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def compress_route(request: Request) -> JSONResponse:
        async def job():
            data, name, form = await _upload(request, "photo", "photo")
            bpp = _number(form, "bpp", float, 1e-9, "the target bpp")
            quality = _number(form, "quality", int, 1, "the quality")
            max_side = _number(form, "max_side", int, 16, "the max side")
            if bpp is not None and quality is not None:
                raise InputError("give a target bpp or a quality, not both")
            caption = (form.get("caption") or "").strip() or None
            return await run_in_threadpool(
                run_locked, compress, data, name, bpp=bpp, quality=quality, caption=caption, max_side=max_side
            )

        return await respond(job)

    async def decompress_route(request: Request) -> JSONResponse:
        async def job():
            data, name, _ = await _upload(request, "file", ".stic file")
            return await run_in_threadpool(run_locked, decompress, data, name)

        return await respond(job)

    async def result_file(request: Request) -> Response:
        name = request.path_params["name"]
        data = results.file(request.path_params["key"], name)
        if data is None:
            return JSONResponse({"error": "no such result (the server keeps the last few only)"}, 404)
        headers = {"Content-Disposition": f'attachment; filename="{name}"'} if "download" in request.query_params else {}
        return Response(data, media_type=MEDIA_TYPES.get(Path(name).suffix, "application/octet-stream"), headers=headers)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/compress", compress_route, methods=["POST"]),
            Route("/api/decompress", decompress_route, methods=["POST"]),
            Route("/results/{key}/{name}", result_file),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
