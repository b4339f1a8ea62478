"""Counting many slides on Ray: a pool of workers, each holding one loaded model, fed tile batches; per slide,
the same plan, merge, thresholds and counts as in-process counting (counting.py), so the counts are the same.

Only boxes travel: a worker plans a slide (scale, regions, tile grid, background skipped) and reads and
predicts its tile batches from the file itself, so no pixels pass through Ray's object store, and each slide's
merge needs only its own tiles' boxes. Ray's own `ActorPool` hands the tasks to idle workers; Ray Core rather
than Ray Data: rows of tile pixels would be serialised between stages, which is the cost this design avoids. Ray is imported here only
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

from ..core.detections import Detections
from ..core.errors import InputError
from ..core.images import open_image
from .counting import ImageCount, ImagePlan, finish_image, merge_plan, output_stems, plan_image, predict_batch, read_batch
from .options import CountOptions


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

    def plan(self, path: str, options: CountOptions) -> ImagePlan | _Failed:
        try:
            return plan_image(self._source(path), self.detector, options)
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


def count_images_ray(files: list[Path], detector: Any, detector_args: dict, ray_options: RayOptions,
                     options: CountOptions = CountOptions(), out: Path | None = None, progress: bool = True,
                     worker: type = TileWorker, differential: Any = None) -> tuple[list[ImageCount], list[InputError]]:
    """Count `files` (already listed, see counting.input_files) on Ray: the results `count_images` gives.
    `detector` (loaded here) merges and thresholds; `detector_args` build one `worker` per Ray worker."""
    ray = require_ray()
    from ray.util import ActorPool

    started = not ray.is_initialized()
    if started:
        ray.init(address=ray_options.address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=False)
    try:
        gpus = ray_options.gpus_per_worker
        resources = ray.cluster_resources()
        n = ray_options.workers or max(1, int(resources.get("GPU", 0) / gpus) if gpus else int(resources.get("CPU", 1)))
        # one CPU per worker; the model in it uses that many threads, not every core of the machine
        actor = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=2, max_task_retries=2,
                           runtime_env={"env_vars": {"BCCD_YOLO_THREADS": "1", "OMP_NUM_THREADS": "1"}})(worker)
        pool = ActorPool([actor.remote(detector_args) for _ in range(n)])
        plans, errors = _plan_all(ray, pool, files, options)
        results = _count_all(ray, pool, files, plans, errors, detector, options, out, progress, differential)
        return [results[i] for i in sorted(results)], [errors[i] for i in sorted(errors)]
    finally:
        if started:
            ray.shutdown()


def _get_next(ray: Any, pool: Any, path: Path) -> Any:
    """The pool's next result in submission order; a worker that died for good (after Ray's retries) is reported
    by file, never skipped."""
    try:
        result = pool.get_next()
    except ray.exceptions.RayError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return InputError(path, f"a Ray worker failed while counting it ({first[:200]}); not counted")
    return result.error() if isinstance(result, _Failed) else result


def _plan_all(ray: Any, pool: Any, files: list[Path], options: CountOptions) -> tuple[dict[int, ImagePlan], dict[int, InputError]]:
    for f in files:
        pool.submit(lambda a, path: a.plan.remote(path, options), str(f))
    plans: dict[int, ImagePlan] = {}
    errors: dict[int, InputError] = {}
    for i, f in enumerate(files):
        result = _get_next(ray, pool, f)
        (errors if isinstance(result, InputError) else plans)[i] = result
    return plans, errors


def _count_all(ray: Any, pool: Any, files: list[Path], plans: dict[int, ImagePlan], errors: dict[int, InputError],
               detector: Any, options: CountOptions, out: Path | None, progress: bool,
               differential: Any = None) -> dict[int, ImageCount]:
    """Every tile batch through the pool; each image merged and finished as soon as its last batch is back."""
    jobs = [(i, k) for i in sorted(plans) for k in range(len(plans[i].batches))]
    for i, k in jobs:
        pool.submit(lambda a, job: a.predict.remote(str(files[job[0]]), plans[job[0]], job[1]), (i, k))
    stems = output_stems(files)
    found: dict[int, list] = {i: [] for i in plans}
    results: dict[int, ImageCount] = {}
    start = time.perf_counter()
    with tqdm(total=sum(p.predicted for p in plans.values()), desc="tiles", unit="tile", disable=not progress) as bar:
        for i, k in jobs:
            batch = _get_next(ray, pool, files[i])
            bar.update(len(plans[i].batches[k]))
            if i in errors:
                continue
            if isinstance(batch, InputError):
                errors[i] = batch
                continue
            found[i] += batch
            if k == len(plans[i].batches) - 1:
                try:
                    d = merge_plan(plans[i].tiles, found.pop(i), detector)
                    results[i] = finish_image(plans[i], d, detector, options, out, stems[files[i]],
                                              differential=differential, progress=progress)
                except InputError as e:
                    errors[i] = e
            bar.set_postfix_str(f"images {len(results) + len(errors)}/{len(files)}, "
                                f"{bar.n / max(time.perf_counter() - start, 1e-9):.1f} tiles/s")
    return results
