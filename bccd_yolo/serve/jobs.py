"""One count request: uploads saved under names the server makes, counted by `count_images` (the CLI's path), and
its reports (CSV, JSON, GeoJSON) and overlays kept in a folder of the server's temporary directory."""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import threading
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from ..core.errors import InputError
from ..core.fsutil import atomic_write_text
from ..count.options import CountOptions
from .settings import ServeSettings
from .zoom import ZoomView, needs_zoom, zoom_tiles

if TYPE_CHECKING:
    from ..count.counting import ImageCount, Progress
    from ..count.detector import Detector
    from ..count.differential import Differential

SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")
JOB_ID = re.compile(r"[0-9a-f]{32}")
CHUNK = 1 << 20


def safe_suffix(filename: str | None) -> str:
    """The client's file suffix, lower case, if it is a plain one (".jpg"); else "" (open_image then says why)."""
    suffix = PurePosixPath((filename or "").replace("\\", "/")).suffix
    return suffix.lower() if SAFE_SUFFIX.fullmatch(suffix) else ""


def display_name(filename: str | None, index: int) -> str:
    """The client's file name without folders, for showing only (never used as a path)."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    return name[:200] or f"upload {index + 1}"


@dataclass
class Job:
    """A request's folder: in/ the uploads, out/ the overlays, reports/ the downloads; `names` maps each saved
    upload to the client's name, `files` the downloadable names of reports/ and out/."""

    folder: Path
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    names: dict[str, str] = field(default_factory=dict)
    reports: set[str] = field(default_factory=set)
    overlays: set[str] = field(default_factory=set)
    zooms: dict[str, ZoomView] = field(default_factory=dict)  # Deep Zoom tiles of large images, by stem
    state: str = "queued"  # queued, counting, zoom (making the zoomable views), done, failed
    progress: Progress | None = None
    result: dict | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        for sub in ("in", "out", "reports"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)

    def save(self, stream: IO[bytes], filename: str | None) -> Path:
        """Copy one upload under a name the server makes (its index and the checked suffix)."""
        index = len(self.names)
        path = self.folder / "in" / f"image{index:03d}{safe_suffix(filename)}"
        with path.open("wb") as f:
            shutil.copyfileobj(stream, f, CHUNK)
        self.names[str(path)] = display_name(filename, index)
        return path

    def file(self, name: str, overlay: bool = False) -> Path | None:
        """A downloadable file by name; None for any name this job did not write (traversal included)."""
        known = self.overlays if overlay else self.reports
        if not SAFE_NAME.fullmatch(name) or name not in known:
            return None
        return self.folder / ("out" if overlay else "reports") / name

    def tile(self, stem: str, z: int, y: int, x: int) -> Path | None:
        """One Deep Zoom tile of a zoomable image this job made; None for anything else."""
        view = self.zooms.get(stem)
        if view is None or not (0 <= z <= view.levels and 0 <= y < 2**z and 0 <= x < 2**z):
            return None
        return view.folder / str(z) / str(y) / f"{x}.jpg"

    def status(self) -> dict:
        """The page's view of the job while it runs: state, progress and, once done, the result."""
        p = self.progress
        out: dict[str, Any] = {"id": self.id, "state": self.state, "error": self.error}
        if p is not None:
            out["progress"] = {"images_done": p.images_done, "images": p.images, "tiles_done": p.tiles_done,
                               "tiles": p.tiles}
        if self.result is not None:
            out["result"] = self.result
        return out


class Counter:
    """The model, loaded once on the first count, and the lock that keeps counts one at a time."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.lock = threading.Lock()
        self._detector: Detector | None = None
        self._differential: Differential | None = None

    def load(self) -> tuple[Detector, Differential | None]:
        """The CLI's defaults for `count` (backend and precision auto, iou 0.7, batch), at the settings' weights."""
        if self._detector is None:
            from ..count.detector import Detector, default_weights
            from ..count.differential import default_differential

            weights = self.settings.weights or default_weights()
            self._detector = Detector(weights, backend=self.settings.backend, conf=self.settings.conf, quiet=True)
            if self.settings.differential:
                self._differential = default_differential(None, self.settings.backend)
        return self._detector, self._differential

    def detector(self, conf: float | dict[str, float] | None) -> Detector:
        """The loaded model at other thresholds: a shallow copy sharing its network."""
        from ..count.thresholds import Thresholds

        detector, _ = self.load()
        if conf is None:
            return detector
        other = copy.copy(detector)
        other.thresholds = Thresholds.for_model(detector.weights, detector.names, conf)
        return other

    def count(self, job: Job, options: CountOptions, conf: float | dict[str, float] | None) -> dict:
        """Count the job's uploads as `bccd-yolo count --out` would; write its reports and, for large images,
        their Deep Zoom tiles; the page's JSON (also kept as the job's result)."""
        from ..count.counting import count_images

        with self.lock:
            job.state = "counting"
            detector = self.detector(conf)
            _, differential = self.load()
            inputs = [Path(p) for p in job.names]
            results, errors = count_images(inputs, detector, options, job.folder / "out", progress=False,
                                           differential=differential, on_progress=lambda p: setattr(job, "progress", p))
            for model in (detector, differential):  # a slide's buffers: 652 -> 510 MB kept between counts
                if model is not None:
                    model.release_memory()
        from ..count.outputs import to_json

        shown = [replace(r, path=job.names.get(r.path, Path(r.path).name)) for r in results]
        bad = client_errors(job, errors)
        data = to_json(shown, detector, bad, options.tile, options.overlap)
        stems = write_reports(job, data, shown, results, detector)
        job.state = "zoom"
        for r in results:
            if needs_zoom(r.width, r.height):
                view = zoom_tiles(Path(r.path), job.folder / "zoom" / stems[r.path])
                if view is not None:
                    job.zooms[stems[r.path]] = view
        job.result = page_json(job, data, shown, results, bad, stems)
        job.state = "done"
        return job.result

    def start(self, job: Job, options: CountOptions, conf: float | dict[str, float] | None) -> None:
        """Count the job on a thread of its own (one count at a time); the page follows `job.status()`."""
        def run() -> None:
            try:
                self.count(job, options, conf)
            except InputError as e:
                job.error, job.state = e.render(lambda n: n), "failed"
            except Exception as e:  # the page must hear of it; the server log has the traceback
                job.error, job.state = f"counting failed ({type(e).__name__}): {e}", "failed"
                raise

        threading.Thread(target=run, name=f"count-{job.id[:8]}", daemon=True).start()


def write_reports(job: Job, data: dict, shown: list[ImageCount], results: list[ImageCount],
                  detector: Detector) -> dict[str, str]:
    """counts.json (`data`, as `count --json` writes it) and counts.csv as `count --csv` writes it (paths: the
    client's names), and one <stem>.geojson per image; returns each image's stem (the overlays' too)."""
    from ..count.counting import output_stems
    from ..count.outputs import to_csv, to_geojson
    from ..count.overlay import colour

    reports = job.folder / "reports"
    atomic_write_text(reports / "counts.json", json.dumps(data, indent=1) + "\n")
    atomic_write_text(reports / "counts.csv", to_csv(shown, detector))
    job.reports |= {"counts.json", "counts.csv"}
    colours = {n: colour(n, i) for i, n in enumerate(detector.names)}
    stems = {str(p): s for p, s in output_stems([Path(r.path) for r in results]).items()}
    for r, s in zip(results, shown):
        name = f"{stems[r.path]}.geojson"
        atomic_write_text(reports / name, json.dumps(to_geojson(s, colours, r.origin)) + "\n")
        job.reports.add(name)
        job.overlays |= {Path(p).name for p in r.overlay}
    return stems


def client_errors(job: Job, errors: list[InputError]) -> list[InputError]:
    """The errors with the client's file names in place of the server's, in the message too."""
    out = []
    for e in errors:
        template = e.template
        for path, name in job.names.items():
            template = template.replace(path, name)
        out.append(InputError(job.names.get(e.path or "", e.path), template, e.option))
    return out


def finite(value: Any) -> Any:
    """JSON for browsers: an infinite interval bound (a ratio to zero cells) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def page_json(job: Job, data: dict, shown: list[ImageCount], results: list[ImageCount], bad: list[InputError],
              stems: dict[str, str]) -> dict:
    """`data` (`to_json`, already written as counts.json) plus the job id, per-image file URLs and one message
    per bad file."""
    from ..count.outputs import qc_lines

    base = f"/api/result/{job.id}"
    for image, r in zip(data["images"], results):
        names = [Path(p).name for p in r.overlay]
        view = next((n for n in names if n.endswith((".jpg", ".png"))), None)
        image["overlay"] = [f"{base}/overlay/{n}" for n in names]
        image["overlay_url"] = f"{base}/overlay/{view}" if view else None
        image["geojson_url"] = f"{base}/{stems[r.path]}.geojson"
        zoom = job.zooms.get(stems[r.path])
        image["zoom"] = {**zoom.page(f"{base}/zoom/{stems[r.path]}"), "origin": list(r.origin)} if zoom else None
        image["name"] = image["path"]
    data["id"] = job.id
    data["downloads"] = {"csv": f"{base}/counts.csv", "json": f"{base}/counts.json"}
    data["messages"] = [e.render(lambda n: n) for e in bad]
    data["qc_lines"] = qc_lines(shown)
    return finite(data)
