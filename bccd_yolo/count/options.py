"""How to count: one typed options object that the CLI, the page, the local loop and the Ray engine share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.edges import DEFAULT_EDGE, EdgeRule

DEFAULT_OVERLAP = 0.4  # 256 px of a 640 tile: at least the largest cell (WBC, up to ~260 px), so each cell is whole in some tile
MIN_TILE = 64  # px at the model's scale: smaller tiles see too little around a cell (and mean millions of tiles)
AUTO = "auto"
# The scale of an input whose file records none, when --mpp is not given: the model's own photo scale ("model"), or
# the red cells' estimate ("auto"). Chosen by benchmarks/per_source.py on val fields of BCCD, PBC and Raabin (README).
UNRECORDED_SCALE = "auto"
# The precision count runs an OpenVINO export at: "auto", the CPU plugin's choice (bf16 on CPUs with AVX512-BF16 or
# AMX, else fp32). On val (benchmarks/per_source.py --precision auto vs fp32) it moved no class's count MAE by more
# than +0.01 per field or AP50 by more than -0.001, the rule int8 failed, at half the time on such CPUs.
# Measurement (calibrate, report) pins fp32, whose numbers do not depend on the CPU.
DEFAULT_PRECISION = "auto"


@dataclass(frozen=True)
class CountOptions:
    """`tile` in input pixels (None: the network's input at the model's scale; 0: never tile); `mpp` micrometres per
    pixel, "auto" (from the red cells) or None (the file's scale, else the model's); `edge` which cells cut by the
    image edge count; `regions` a GeoJSON of polygons to count within; `skip_background` leaves bare-glass tiles
    unpredicted; `qc` gives each image a verdict on whether its counts can be trusted; `slide_overlay` writes a tiled
    image's full-size overlay TIFF beside its preview (the page draws its own zoomable view, and does without)."""

    tile: int | None = None
    overlap: float = DEFAULT_OVERLAP
    mpp: float | str | None = None
    edge: EdgeRule = DEFAULT_EDGE
    regions: Path | None = None
    skip_background: bool = True
    qc: bool = True
    slide_overlay: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "edge", EdgeRule(self.edge))
