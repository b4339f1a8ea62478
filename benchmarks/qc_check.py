"""Does the qc verdict flag the fields whose counts are wrong, and leave the others alone? Measured on val fields.

    python benchmarks/qc_check.py [--weights W] [--name shipped] [--per-source 40]

Fields: BCCD's val photos (complete labels), PBC's and Raabin's val fields (../shared), each as it is and changed
the ways other microscopes differ: hue turned (60 and 150 degrees), a pale grey-blue stain, half and double size
(labels moved with them); and as photos are often taken: beside bare glass (a smear's edge), inside a dark surround
(an eyepiece camera), lit unevenly (corners 30 % darker), all three with their counts unchanged. Each is counted by
`count_images` at count's defaults. A field is "wrong" when its RBC count is off by more than 25 % of the labelled
count. Prints, per variant, the fields flagged among the wrong and among the rest, and each signal's values, and
writes benchmarks/results/qc/<name>.json. Targets (issue #34): on the unchanged fields at most 5 % flagged; of the
wrong fields at least 80 % flagged.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def vary(rgb: np.ndarray, how: str) -> tuple[np.ndarray, float]:
    """The field changed as another microscope would show it, and the factor its labels scale by."""
    import cv2

    if how == "as is":
        return rgb, 1.0
    if how.startswith("hue"):
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(int) + int(how.split()[1]) // 2) % 180
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 1.0
    if how == "pale blue-grey":
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        tint = np.array([0.80, 0.82, 0.95], np.float32)  # blue-grey paper, violet-grey cells at half contrast
        out = (200 + 0.5 * (grey[..., None] - 200)) * tint
        return np.clip(out, 0, 255).astype(np.uint8), 1.0
    if how in ("on glass", "dark surround"):
        return surround(rgb, how), 1.0
    if how == "uneven light":
        h, w = rgb.shape[:2]
        y, x = np.mgrid[0:h, 0:w]
        r2 = ((x - w / 2) ** 2 + (y - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        light = 1 - 0.3 * r2  # a lamp not centred or flattened: the corners 30 % darker than the centre
        return np.clip(rgb * light[..., None], 0, 255).astype(np.uint8), 1.0
    factor = {"half size": 0.5, "double size": 2.0}[how]
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR), factor


def surround(rgb: np.ndarray, how: str) -> np.ndarray:
    """The field beside bare glass (a smear's edge: the field, then half its width of near-white glass), or inside a
    dark surround (an eyepiece camera's field stop: a fifth of its size of near-black on every side). Its cells are
    all still there, so its counts are right when the cells are found."""
    h, w = rgb.shape[:2]
    noise = np.random.default_rng(0)
    if how == "on glass":
        out = np.full((h, w + w // 2, 3), (238, 238, 236), np.float32)
        y0 = x0 = 0
    else:
        y0 = x0 = round(0.2 * max(h, w))
        out = np.full((h + 2 * y0, w + 2 * x0, 3), (12, 12, 12), np.float32)
    glass = np.ones(out.shape[:2], bool)
    glass[y0 : y0 + h, x0 : x0 + w] = False
    out[glass] += noise.normal(0, 2, (int(glass.sum()), 3))
    out[y0 : y0 + h, x0 : x0 + w] = rgb
    return np.clip(out, 0, 255).astype(np.uint8)


VARIANTS = ("as is", "hue 60", "hue 150", "pale blue-grey", "half size", "double size", "on glass", "dark surround",
            "uneven light")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=ROOT / "weights" / "bccd_yolov3_tiny.pt")
    p.add_argument("--name", default="shipped")
    p.add_argument("--per-source", type=int, default=40, help="fields per source and variant (the first N of val)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    args = p.parse_args()

    import cv2
    from per_source import load_sources

    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.counting import cell_px, count_images
    from bccd_yolo.count.detector import Detector
    from bccd_yolo.count.qc import signals, stain_of

    det = Detector(args.weights, quiet=True)
    k = det.names.index("RBC")
    sources = load_sources("val", det.names, ["bccd", "pbc", "raabin"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants.split(","):
            paths, truth = [], []
            for source, fields in sources.items():
                for f in fields[: args.per_source]:
                    rgb = cv2.cvtColor(cv2.imread(str(f.path)), cv2.COLOR_BGR2RGB)
                    out, _ = vary(rgb, variant)
                    path = Path(tmp) / f"{source}__{variant.replace(' ', '_')}__{f.path.stem}.png"
                    cv2.imwrite(str(path), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
                    paths.append(path)
                    truth.append((source, int(f.truth.counts(len(det.names))[k])))
            counted, errors = count_images(paths, det, progress=False)
            assert not errors, errors[0]
            for c, (source, true) in zip(counted, truth):
                src = open_image(Path(c.path))
                stained = stain_of(src, cell_px(det, c.mpp)).share
                src.close()
                s = signals(c.detections, det.names, det.thresholds.by_class, c.area_px, stained)
                rbc = c.counts["RBC"]
                rows.append({"variant": variant, "source": source, "field": Path(c.path).name, "true": true,
                             "counted": rbc, "wrong": abs(rbc - true) > 0.25 * max(1, true), "qc": c.qc,
                             "coverage": s.coverage, "near": round(s.near, 3), "wbc": s.wbc, "rbc": s.rbc,
                             "mpp_source": c.mpp_source})
    report(rows, args.name)


def report(rows: list[dict], name: str) -> None:
    print("| variant | source | fields | wrong | wrong flagged | right flagged |\n|---|---|---|---|---|---|")
    for variant in VARIANTS:
        for source in ("bccd", "pbc", "raabin"):
            sel = [r for r in rows if r["variant"] == variant and r["source"] == source]
            if not sel:
                continue
            wrong = [r for r in sel if r["wrong"]]
            right = [r for r in sel if not r["wrong"]]
            print(f"| {variant} | {source} | {len(sel)} | {len(wrong)} | {sum(bool(r['qc']) for r in wrong)} | "
                  f"{sum(bool(r['qc']) for r in right)} |")
    plain = [r for r in rows if r["variant"] == "as is"]
    wrong = [r for r in rows if r["wrong"]]
    summary = {"as_is_flagged": sum(bool(r["qc"]) for r in plain), "as_is_fields": len(plain),
               "wrong_flagged": sum(bool(r["qc"]) for r in wrong), "wrong_fields": len(wrong),
               "right_flagged": sum(bool(r["qc"]) for r in rows if not r["wrong"]),
               "right_fields": sum(not r["wrong"] for r in rows)}
    print(f"unchanged fields flagged: {summary['as_is_flagged']} of {summary['as_is_fields']} (target <= 5 %); "
          f"wrong fields flagged: {summary['wrong_flagged']} of {summary['wrong_fields']} (target >= 80 %); "
          f"right fields (all variants) flagged: {summary['right_flagged']} of {summary['right_fields']}")
    out = ROOT / "benchmarks" / "results" / "qc" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "fields": rows}, indent=1) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
