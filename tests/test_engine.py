"""`count --engine ray`: a local Ray with 2 CPUs gives the same JSON as the in-process engine, and reports bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bccd_yolo.cli import main

ray = pytest.importorskip("ray", reason="the ray extra is part of the test extra; without it the engine is not installed")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(bccd_dataset, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("engine")
    photos = sorted((bccd_dataset / "images" / "test").glob("*.jpg"))[:4]
    for p in photos:
        (folder / p.name).write_bytes(p.read_bytes())
    slide = np.full((1400, 2100, 3), 232, np.uint8)  # a tiled slide: photos on glass, some tiles bare
    for (y, x), p in zip([(0, 0), (600, 700), (100, 1400)], photos):
        slide[y : y + 480, x : x + 640] = np.asarray(Image.open(p).convert("RGB"))
    tifffile.imwrite(folder / "slide.tif", slide, tile=(256, 256), photometric="rgb", compression="zlib")
    (folder / "broken.jpg").write_bytes(photos[0].read_bytes()[:2000])  # truncated
    return [folder]


def count(inputs, tmp_path, name, *extra):
    out = tmp_path / name
    code = main(["count", *map(str, inputs), "--conf", "0.2", "--json", str(out.with_suffix(".json")),
                 "--out", str(out), "--backend", "torch", "--quiet", *extra])
    report = json.loads(out.with_suffix(".json").read_text())
    for image in report["images"]:
        image["detections"].sort(key=lambda d: (d["class"], d["box"]))
        image["overlay"] = [Path(p).name for p in image["overlay"]]
    return code, report


def test_ray_engine_counts_exactly_as_the_local_one(inputs, tmp_path, local_ray, capsys, monkeypatch):
    # locally on one thread, as each Ray worker runs: torch's CPU kernels sum in another order on another thread
    # count, which moved one score by 1e-4 on an AMD EPYC; the same arithmetic makes exact equality the test
    monkeypatch.setenv("BCCD_YOLO_THREADS", "1")
    code_local, local = count(inputs, tmp_path, "local")
    code_ray, on_ray = count(inputs, tmp_path, "ray", "--engine", "ray")
    err = capsys.readouterr().err
    # the truncated photo is reported by name by both, and the rest is counted
    assert code_local == code_ray == 1 and err.count("broken.jpg") == 2
    assert [e["path"] for e in on_ray["errors"]] == [e["path"] for e in local["errors"]]
    assert len(local["images"]) == 5 and any(i["tiles"] > 1 and i["tiles_skipped"] > 0 for i in local["images"])
    assert sum(len(i["detections"]) for i in local["images"]) > 50
    assert on_ray["images"] == local["images"] and on_ray["total"] == local["total"]
    # the same overlays, written whole
    assert sorted(p.name for p in (tmp_path / "ray").iterdir() if not p.name.startswith(".")) == \
        sorted(p.name for p in (tmp_path / "local").iterdir() if not p.name.startswith("."))


def test_ray_engine_reports_a_missing_install_in_one_line(inputs, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without the extra
    assert main(["count", str(inputs[0]), "--engine", "ray", "--quiet"]) == 2
    assert "--engine ray: not installed (pip install 'bccd-yolo[ray]')" in capsys.readouterr().err


class DiesOnce(__import__("bccd_yolo.count.engine", fromlist=["TileWorker"]).TileWorker):
    """A worker whose process dies on its first batch of the slide (once per run, by a marker file)."""

    marker: str = ""

    def predict(self, path, plan, k):
        import os

        if path.endswith("slide.tif") and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().predict(path, plan, k)


def test_a_worker_that_dies_mid_slide_is_replaced_and_the_count_is_complete(inputs, tmp_path, local_ray):
    from bccd_yolo.count.counting import count_images, input_files
    from bccd_yolo.count.detector import Detector, default_weights
    from bccd_yolo.count.engine import RayOptions, count_images_ray
    from bccd_yolo.count.options import CountOptions

    ray.cloudpickle.register_pickle_by_value(__import__(__name__))  # the test's worker class travels by value
    DiesOnce.marker = str(tmp_path / "died")
    model = dict(weights=default_weights(), backend="torch", conf=0.2)
    detector = Detector(**model)
    files = [f for f in input_files(inputs, None) if f.name != "broken.jpg"]
    local, _ = count_images(files, detector, progress=False)
    on_ray, errors = count_images_ray(files, detector, model, RayOptions(), CountOptions(), progress=False,
                                      worker=DiesOnce)
    assert (tmp_path / "died").exists() and not errors  # it died, Ray restarted it and retried the batch
    assert [r.counts for r in on_ray] == [r.counts for r in local]
