"""Counting many slides on Ray: a pool of workers, each holding one loaded model, fed tile batches; per slide,
the same plan, merge, thresholds and counts as in-process counting (counting.py), so the counts are the same.

Only boxes travel: a worker plans a slide (scale, regions, tile grid, background skipped) and reads and
predicts its tile batches from the file itself, so no pixels pass through Ray's object store, and each slide's
merge needs only its own tiles' boxes. Ray Core (actors and `ray.wait`) rather than Ray Data: rows of tile
pixels would be serialised between stages, which is the cost this design avoids. Ray is imported here only
(pip install 'bccd-yolo[ray]'); without an address a local Ray starts on this machine, `auto` or `ray://...`
joins an existing cluster.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .counting import ImageCount, ImagePlan, finish_image, merge_plan, output_stems, plan_image, predict_batch, read_batch
from .detections import Detections
from .edges import DEFAULT_EDGE, EdgeRule
from .errors import InputError
from .images import open_image

IN_FLIGHT = 2  # batches queued per worker: one running, one waiting, so a worker never idles between batches


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray on this machine
    workers: int | None = None  # default: one per CPU (or per gpus_per_worker of the GPUs) Ray reports
    gpus_per_worker: float = 0.0


class _Failed:
    """An InputError as plain data (exceptions with their own constructors do not survive pickling)."""

    def __init__(self, e: InputError):
        self.path, self.template, self.option = e.path, e.template, e.option

    def error(self) -> InputError:
        return InputError(self.path, self.template, self.option)


class TileWorker:
    """One loaded model: plans images and predicts their tile batches, reading the tiles from the files."""

    def __init__(self, detector_args: dict):
        from .detector import Detector

        self.detector = Detector(**detector_args, quiet=True)
        self.sources: dict[str, Any] = {}

    def _source(self, path: str):
        if path not in self.sources:
            while len(self.sources) >= 2:  # a worker interleaves at most a couple of slides
                self.sources.pop(next(iter(self.sources))).close()
            self.sources[path] = open_image(Path(path))
        return self.sources[path]

    def plan(self, path: str, options: dict) -> ImagePlan | _Failed:
        try:
            return plan_image(self._source(path), self.detector, **options)
        except InputError as e:
            return _Failed(e)

    def predict(self, path: str, plan: ImagePlan, k: int) -> list[Detections] | _Failed:
        try:
            src = self._source(path)
            return predict_batch(plan.tiles, k, read_batch(src, plan.tiles, k), self.detector)
        except InputError as e:
            return _Failed(e)


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(None, "ray: not installed (pip install 'bccd-yolo[ray]')", option="engine") from None
    return ray


def count_images_ray(files: list[Path], detector: Any, detector_args: dict, options: RayOptions,
                     tile: int | None, overlap: float, mpp: float | str | None, skip_background: bool = True,
                     edge: EdgeRule | str = DEFAULT_EDGE, regions: Path | None = None, out: Path | None = None,
                     progress: bool = True, worker: type = TileWorker) -> tuple[list[ImageCount], list[InputError]]:
    """Count `files` (already listed, see counting.input_files) on Ray: the results `count_images` gives.
    `detector` (loaded here) merges and thresholds; `detector_args` build one `worker` per Ray worker."""
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=False)
    try:
        gpus = options.gpus_per_worker
        resources = ray.cluster_resources()
        n = options.workers or max(1, int(resources.get("GPU", 0) / gpus) if gpus else int(resources.get("CPU", 1)))
        # one CPU per worker; torch and Ultralytics in it use that many threads, not every core of the machine
        actor = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=2, max_task_retries=2,
                           runtime_env={"env_vars": {"BCCD_YOLO_THREADS": "1", "OMP_NUM_THREADS": "1"}})(worker)
        workers = [actor.remote(detector_args) for _ in range(n)]
        plan_options = {"tile": tile, "overlap": overlap, "mpp": mpp, "skip_background": skip_background,
                        "regions": regions}
        return _run(ray, workers, files, plan_options, detector, EdgeRule(edge), out, progress)
    finally:
        if started:
            ray.shutdown()


def _get(ray: Any, ref: Any, path: Path) -> Any:
    """A task's result; a worker that died for good (after Ray's retries) is reported by file, never skipped."""
    try:
        result = ray.get(ref)
    except ray.exceptions.RayError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return InputError(path, f"a Ray worker failed while counting it ({first[:200]}); not counted")
    return result.error() if isinstance(result, _Failed) else result


def _run(ray: Any, workers: list, files: list[Path], plan_options: dict, detector: Any, edge: EdgeRule,
         out: Path | None, progress: bool) -> tuple[list[ImageCount], list[InputError]]:
    errors: dict[int, InputError] = {}
    plans: dict[int, ImagePlan] = {}
    pending = {workers[i % len(workers)].plan.remote(str(f), plan_options): i for i, f in enumerate(files)}
    while pending:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(ref)
        result = _get(ray, ref, files[i])
        if isinstance(result, InputError):
            errors[i] = result
        else:
            plans[i] = result
    stems = output_stems(files)
    queue = [(i, k) for i in sorted(plans) for k in range(len(plans[i].batches))]
    found: dict[int, list] = {i: [None] * len(plans[i].batches) for i in plans}
    left = {i: len(plans[i].batches) for i in plans}
    results: dict[int, ImageCount] = {}
    load = [0] * len(workers)
    running: dict[Any, tuple[int, int, int]] = {}
    start = time.perf_counter()
    with tqdm(total=sum(p.predicted for p in plans.values()), desc="tiles", unit="tile", disable=not progress) as bar:
        while queue or running:
            while queue and min(load) < IN_FLIGHT:
                w = load.index(min(load))
                i, k = queue.pop(0)
                running[workers[w].predict.remote(str(files[i]), plans[i], k)] = (i, k, w)
                load[w] += 1
            (ref,), _ = ray.wait(list(running), num_returns=1)
            i, k, w = running.pop(ref)
            load[w] -= 1
            batch = _get(ray, ref, files[i])
            bar.update(len(plans[i].batches[k]))
            if i in errors:
                continue
            if isinstance(batch, InputError):
                errors[i] = batch
                continue
            found[i][k] = batch
            left[i] -= 1
            if left[i] == 0:
                per_tile = [d for part in found.pop(i) for d in part]
                try:
                    d = merge_plan(plans[i].tiles, per_tile, detector)
                    results[i] = finish_image(plans[i], d, detector, edge, out, stems[files[i]])
                except InputError as e:
                    errors[i] = e
            done = len(results) + len(errors)
            bar.set_postfix_str(f"images {done}/{len(files)}, {bar.n / max(time.perf_counter() - start, 1e-9):.1f} tiles/s")
    return [results[i] for i in sorted(results)], [errors[i] for i in sorted(errors)]
