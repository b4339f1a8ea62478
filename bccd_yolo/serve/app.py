"""The web app: the page, one counting endpoint, and downloads of what a count wrote."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import parse_qs

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.edges import EdgeRule
from ..core.errors import InputError
from ..count.options import AUTO, CountOptions
from .jobs import JOB_ID, Counter, Job
from .settings import ServeSettings, upload_limit_text

STATIC = Path(__file__).resolve().parent / "static"
LEAFLET_FILES = ("leaflet.js", "leaflet.css")


def leaflet_folder() -> Path | None:
    """Leaflet (draws the zoomable views) from its XStatic package: served by this server, no CDN."""
    try:
        import xstatic.pkg.leaflet as leaflet
    except ImportError:
        return None
    return Path(leaflet.BASE_DIR)


class TooLarge(Exception):
    """The request body went past the upload limit."""


class Guard:
    """ASGI middleware, before any body is read: the token (when the settings have one) and the upload limit (by
    Content-Length, and by counting the bytes of bodies sent without one)."""

    def __init__(self, app: ASGIApp, token: str | None, limit: int):
        self.app, self.token, self.limit = app, token, limit

    def authorised(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-token", b"").decode("latin-1")
        given = given or (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [""])[0]
        return self.token is None or secrets.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self.authorised(scope):
            return await JSONResponse({"detail": "this page needs its token: open the address bccd-yolo serve printed "
                                                 "(…?token=…) or send an X-Token header"}, 401)(scope, receive, send)
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            return await self.too_large(scope, receive, send)
        await self.limited(scope, receive, send)

    async def limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen, over = 0, False

        async def counted() -> Message:
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b"")) if message["type"] == "http.request" else 0
            if seen > self.limit:
                over = True
                raise TooLarge()
            return message

        async def held(message: Message) -> None:
            if not over:  # the app's answer to a body cut short (e.g. 400) is replaced by 413
                await send(message)

        try:
            await self.app(scope, counted, held)
        except Exception:
            if not over:
                raise
        if over:
            await self.too_large(scope, receive, send)

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        text = (f"upload too large: the limit is {upload_limit_text(self.limit)}; count fewer or smaller files at a "
                "time, or start bccd-yolo serve with a larger --max-upload-mb")
        await JSONResponse({"detail": text}, 413)(scope, receive, send)


class Store:
    """The server's temporary directory (made at start, removed at shutdown) and its most recent jobs."""

    def __init__(self, keep: int):
        self.tmp = tempfile.TemporaryDirectory(prefix="bccd-yolo-serve-")
        self.keep = keep
        self.jobs: OrderedDict[str, Job] = OrderedDict()

    def new(self) -> Job:
        job_id = uuid.uuid4().hex
        job = Job(Path(self.tmp.name) / job_id, job_id)
        self.jobs[job.id] = job
        while len(self.jobs) > self.keep:
            _, old = self.jobs.popitem(last=False)
            shutil.rmtree(old.folder, ignore_errors=True)
        return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise HTTPException(404, "no such result (results are kept until the server stops, the most recent only)")
        return job

    def close(self) -> None:
        self.tmp.cleanup()


def count_options(settings: ServeSettings, mpp: str, edge: str, conf: str) -> tuple[CountOptions, Any]:
    """The form's fields (empty: the server's defaults) checked as the CLI checks its flags."""
    from ..core.scale import check_mpp
    from ..count.thresholds import parse_conf

    scale: float | str | None = settings.mpp
    if mpp.strip() == AUTO:
        scale = AUTO
    elif mpp.strip():
        try:
            scale = check_mpp(float(mpp))
        except ValueError:
            raise InputError(None, f"{mpp!r} is not a number (micrometres per pixel, or auto)", option="mpp") from None
    if edge and edge not in [r.value for r in EdgeRule]:
        raise InputError(None, f"{edge!r}: choose one of {', '.join(r.value for r in EdgeRule)}", option="edge")
    # no full-size overlay TIFF: the page never shows one (large images get Deep Zoom tiles, cells drawn from GeoJSON)
    options = CountOptions(mpp=scale, edge=EdgeRule(edge or settings.edge), slide_overlay=False)
    return options, parse_conf(conf) if conf.strip() else None


def create_app(settings: ServeSettings) -> FastAPI:
    """The page at /, counting at POST /api/count and /api/jobs, results at /api/result/{id}/…"""
    store = Store(settings.keep_results)
    counter = Counter(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    app = FastAPI(title="bccd-yolo", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, token=settings.token, limit=settings.max_upload_bytes)
    app.state.settings, app.state.store, app.state.counter = settings, store, counter

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/leaflet/{name}")
    def leaflet(name: str) -> FileResponse:
        folder = leaflet_folder()
        if folder is None or name not in LEAFLET_FILES:
            raise HTTPException(404, "no such file (zoomable views need pip install 'bccd-yolo[serve]')")
        return FileResponse(folder / name)

    add_counting(app, settings, store, counter)
    add_results(app, store)
    return app


def add_counting(app: FastAPI, settings: ServeSettings, store: Store, counter: Counter) -> None:
    """POST /api/count (answers with the result), POST /api/jobs and GET /api/jobs/{id} (the page: progress)."""

    def received(files: list[UploadFile], mpp: str, edge: str, conf: str) -> tuple[Job, CountOptions, Any]:
        options, thresholds = count_options(settings, mpp, edge, conf)
        job = store.new()
        for upload in files:
            job.save(upload.file, upload.filename)
        return job, options, thresholds

    @app.post("/api/count")
    def count(files: list[UploadFile] = File(...), mpp: str = Form(""), edge: str = Form(""),
              conf: str = Form("")) -> JSONResponse:
        """Count and answer with the result (scripts; the page uses /api/jobs to show progress)."""
        try:
            return JSONResponse(counter.count(*received(files, mpp, edge, conf)))
        except InputError as e:
            raise HTTPException(400, e.render(lambda n: n)) from None

    @app.post("/api/jobs")
    def start(files: list[UploadFile] = File(...), mpp: str = Form(""), edge: str = Form(""),
              conf: str = Form("")) -> JSONResponse:
        """Start counting; answer at once with the job, whose progress GET /api/jobs/{id} tells."""
        try:
            job, options, thresholds = received(files, mpp, edge, conf)
        except InputError as e:
            raise HTTPException(400, e.render(lambda n: n)) from None
        counter.start(job, options, thresholds)
        return JSONResponse(job.status())

    @app.get("/api/jobs/{job_id}")
    def status(job_id: str) -> JSONResponse:
        return JSONResponse(store.get(job_id).status())


def add_results(app: FastAPI, store: Store) -> None:
    """What a job wrote: Deep Zoom tiles, overlays, reports; nothing else."""

    @app.get("/api/result/{job_id}/zoom/{stem}/{z:int}/{y:int}/{x:int}.jpg")
    def tile(job_id: str, stem: str, z: int, y: int, x: int) -> FileResponse:
        path = store.get(job_id).tile(stem, z, y, x)
        if path is None or not path.is_file():  # libvips writes no tile outside the image
            raise HTTPException(404, "no such tile")
        return FileResponse(path, media_type="image/jpeg")

    @app.get("/api/result/{job_id}/overlay/{name}")
    def overlay(job_id: str, name: str) -> FileResponse:
        return sent(store.get(job_id).file(name, overlay=True))

    @app.get("/api/result/{job_id}/{name}")
    def report(job_id: str, name: str) -> FileResponse:
        return sent(store.get(job_id).file(name))


def sent(path: Path | None) -> FileResponse:
    if path is None or not path.is_file():
        raise HTTPException(404, "no such file in this result")
    kind = "application/geo+json" if path.suffix == ".geojson" else None
    return FileResponse(path, media_type=kind, filename=path.name if kind or path.suffix in (".csv", ".json") else None)
