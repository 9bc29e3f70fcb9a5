"""Page geometry of a rendered 12-lead ECG: the `RenderConfig` and the `RenderLayout` it produces.

All geometry is decided here, once, in millimetres on a landscape page, and then mapped to pixels. The
raster path (`vlm_ecg.render`), the vector path (`vlm_ecg.render_vector`) and anyone who draws back onto
an image (explanations, tests) read the same `RenderLayout`, so they cannot disagree.

Page plan (landscape, y grows downwards):

* every row starts with a 10 mm calibration area (1 mV x 200 ms pulse), then the traces; the block
  "calibration + row duration x paper speed" is centred horizontally;
* rows have equal pitch (whole millimetres), the baseline in the middle of each row band; a trace is
  clipped at its band like a pen at the edge of its channel, so rows never overlap;
* columns of a row show consecutive time windows (3x4: 0-2.5, 2.5-5, 5-7.5, 7.5-10 s), rhythm strips
  the whole row duration;
* the grid (1 mm minor, 5 mm major) covers the page and is anchored at the first row's trace origin and
  baseline: every row's trace origin sits on a major line and every baseline on a grid line.

Pixel coordinates are continuous: pixel (row i, column j) covers [j, j + 1) x [i, i + 1); its centre is
(j + 0.5, i + 0.5). Boxes are (x0, y0, x1, y1) in these coordinates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .ecg import LEADS

# Landscape page sizes, (width, height) in mm.
PAGE_SIZES_MM: dict[str, tuple[float, float]] = {"letter": (279.4, 215.9), "a4": (297.0, 210.0)}

# Lead grid (rows x columns) and rhythm strips of each layout.
_STD_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
LAYOUTS: dict[str, tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]] = {
    "3x4+II": (_STD_3X4, ("II",)),
    "3x4+3": (_STD_3X4, ("II", "V1", "V5")),
    "3x4": (_STD_3X4, ()),
    "6x2": (tuple(zip(LEADS[:6], LEADS[6:], strict=True)), ()),
    "12x1": (tuple((name,) for name in LEADS), ()),
}

# (major line, minor line) colours of each grid scheme; "none" draws no grid.
GRID_COLOURS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "red": ((255, 0, 0), (254, 223, 219)),
    "pink": ((255, 203, 221), (254, 237, 248)),
    "blue": ((70, 120, 200), (200, 215, 240)),
    "green": ((40, 150, 80), (195, 230, 205)),
    "bw": ((102, 102, 102), (191, 191, 191)),
    "none": ((255, 255, 255), (255, 255, 255)),
}

CALIBRATION_AREA_MM = 10.0  # reserved left of every row's traces, pulse or not, so geometry never shifts
CALIBRATION_RISE_MM = -7.5  # pulse rise, relative to the trace origin
CALIBRATION_WIDTH_S = 0.2  # 200 ms: 5 mm at 25 mm/s
CALIBRATION_MV = 1.0
CALIBRATION_END_MM = -1.0  # where the pulse's trailing baseline stops
MARGIN_TOP_MM = 8.0
MARGIN_BOTTOM_MM = 12.0  # room for the speed / gain line
MIN_MARGIN_SIDE_MM = 5.0
MAX_ROW_DURATION_S = 10.0


def _help(text: str, default: object) -> object:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class RenderConfig:
    """How to draw an ECG. Hashable, so templates and layouts are cached per config.

    Two sizing modes: a **page** (`image_size_px=None`: the page at `dpi`, letter at 200 dpi is
    2200 x 1700 like ecg-image-kit) or a **model input** (`image_size_px=(H, W)` or an int for a square:
    the same page scaled to fit and letterboxed, never distorted).
    """

    layout: str = _help("lead arrangement: " + ", ".join(LAYOUTS), "3x4+II")
    paper_speed_mm_s: float = _help("horizontal scale in mm per second (25 or 50 on clinical paper)", 25.0)
    gain_mm_per_mv: float = _help("vertical scale in mm per millivolt (5, 10 or 20 on clinical paper)", 10.0)
    page: str = _help("paper size, landscape: " + ", ".join(PAGE_SIZES_MM), "letter")
    dpi: float = _help("page-mode resolution in dots per inch (ignored when image_size_px is set)", 200.0)
    image_size_px: tuple[int, int] | int | None = _help("model-input mode: (height, width) or a square side", None)
    row_duration_s: float | None = _help(
        "seconds shown per row (a rhythm strip; columns split it); None = 10 s or what fits the page width", None
    )
    grid: str = _help("grid colours: " + ", ".join(GRID_COLOURS) + " ('none' = blank paper)", "red")
    show_calibration: bool = _help("draw the 1 mV x 200 ms calibration pulse at the start of each row", True)
    show_labels: bool = _help("print lead names at the start of each panel", True)
    show_scale_text: bool = _help("print paper speed and gain below the traces", True)
    trace_width_mm: float = _help("trace line width in mm (at least 1 px)", 0.25)
    label_size_mm: float = _help("lead-label font size (em height) in mm", 3.5)
    minor_line_mm: float = _help("minor (1 mm) grid line width in mm; thinner than a pixel draws a faint line", 0.1)
    major_line_mm: float = _help("major (5 mm) grid line width in mm", 0.2)
    trace_rgb: tuple[int, int, int] = _help("trace and text colour", (0, 0, 0))
    paper_rgb: tuple[int, int, int] = _help("paper colour", (255, 255, 255))
    letterbox_rgb: tuple[int, int, int] = _help("colour of the bars around a letterboxed page", (255, 255, 255))

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.page not in PAGE_SIZES_MM:
            raise ValueError(f"page must be one of {', '.join(PAGE_SIZES_MM)}, got {self.page!r}")
        if self.grid not in GRID_COLOURS:
            raise ValueError(f"grid must be one of {', '.join(GRID_COLOURS)}, got {self.grid!r}")
        for name in ("paper_speed_mm_s", "gain_mm_per_mv", "dpi", "trace_width_mm", "label_size_mm"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("minor_line_mm", "major_line_mm"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        size = self.image_size_px
        if size is not None:
            size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(v) for v in size)
            if len(size) != 2 or min(size) < 64:
                raise ValueError(f"image_size_px must be (height, width) of at least 64 px each, got {size!r}")
            object.__setattr__(self, "image_size_px", size)
        for name in ("trace_rgb", "paper_rgb", "letterbox_rgb"):
            rgb = tuple(int(v) for v in getattr(self, name))
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise ValueError(f"{name} must be three integers in 0..255, got {getattr(self, name)!r}")
            object.__setattr__(self, name, rgb)
        if self.row_duration_s is not None:
            if not self.row_duration_s > 0:
                raise ValueError(f"row_duration_s must be positive, got {self.row_duration_s!r}")
            page_w = PAGE_SIZES_MM[self.page][0]
            need = CALIBRATION_AREA_MM + self.row_duration_s * self.paper_speed_mm_s + 2 * MIN_MARGIN_SIDE_MM
            if need > page_w + 1e-9:
                raise ValueError(
                    f"{self.row_duration_s:g} s at {self.paper_speed_mm_s:g} mm/s needs {need:.0f} mm, wider than "
                    f"the {page_w:g} mm {self.page} page; shorten row_duration_s or slow the paper"
                )
        elif self.row_duration_s_effective <= 0:
            raise ValueError(f"{self.paper_speed_mm_s:g} mm/s leaves no room for a trace on a {self.page} page")

    @property
    def row_duration_s_effective(self) -> float:
        """Seconds per row: `row_duration_s`, or 10 s, or the whole half-seconds that fit the page width."""
        if self.row_duration_s is not None:
            return float(self.row_duration_s)
        room_mm = PAGE_SIZES_MM[self.page][0] - CALIBRATION_AREA_MM - 2 * MIN_MARGIN_SIDE_MM
        return min(MAX_ROW_DURATION_S, math.floor(room_mm / self.paper_speed_mm_s / 0.5 + 1e-9) * 0.5)


@dataclass(frozen=True)
class LeadPanel:
    """Where one lead's time window sits on the image.

    Attributes:
        lead: canonical lead name.
        row, column: position in the layout (rhythm strips have column 0 and rows below the grid).
        rhythm: whether this panel is a full-row rhythm strip.
        start_s: record time (s) drawn at the panel's left edge.
        duration_s: seconds the panel spans.
        box_px: (x0, y0, x1, y1): x0 is the trace origin (time `start_s`), the y range is the clipping band.
        baseline_y_px: y of 0 mV.
        label_xy_px: top-left of the lead label.
    """

    lead: str
    row: int
    column: int
    rhythm: bool
    start_s: float
    duration_s: float
    box_px: tuple[float, float, float, float]
    baseline_y_px: float
    label_xy_px: tuple[float, float]


@dataclass(frozen=True)
class CalibrationPulse:
    """A row's 1 mV x 200 ms pulse: rise and fall x, baseline and top y, and where its polyline starts/ends."""

    row: int
    x_start_px: float
    x_rise_px: float
    x_fall_px: float
    x_end_px: float
    baseline_y_px: float
    top_y_px: float


@dataclass(frozen=True)
class RenderLayout:
    """Geometry of one rendered image: scales, the page box and every lead panel (what ecg-image-kit's JSON holds).

    Attributes:
        width_px, height_px: image size.
        px_per_mm, px_per_s, px_per_mv: scales (px_per_s = paper speed x px_per_mm, px_per_mv = gain x px_per_mm).
        page_box_px: the page inside the image (the whole image in page mode, letterboxed in model-input mode).
        grid_origin_px: a point where a major vertical and a major horizontal grid line cross.
        panels: one `LeadPanel` per drawn trace, grid panels row by row, then rhythm strips.
        calibration: one `CalibrationPulse` per row.
        rotation_deg: counter-clockwise rotation applied by augmentation about the image centre (0 = none);
            `to_pixels` accounts for it.
    """

    width_px: int
    height_px: int
    px_per_mm: float
    px_per_s: float
    px_per_mv: float
    page_box_px: tuple[float, float, float, float]
    grid_origin_px: tuple[float, float]
    panels: tuple[LeadPanel, ...]
    calibration: tuple[CalibrationPulse, ...]
    rotation_deg: float = 0.0

    def panel(self, lead: str, rhythm: bool = False) -> LeadPanel:
        """The (first) panel showing `lead`; `rhythm=True` picks its rhythm strip."""
        for p in self.panels:
            if p.lead == lead and p.rhythm == rhythm:
                return p
        kind = "rhythm strip" if rhythm else "panel"
        raise KeyError(f"no {kind} for lead {lead!r} in this layout")

    def to_pixels(
        self, lead: str, t_s: np.ndarray | float, mv: np.ndarray | float, rhythm: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Map record time (s) and amplitude (mV) of `lead` to image pixel coordinates (x, y).

        Times outside the panel's window map outside its box; callers clip if they need to.
        """
        p = self.panel(lead, rhythm)
        x = p.box_px[0] + (np.asarray(t_s, dtype=np.float64) - p.start_s) * self.px_per_s
        y = p.baseline_y_px - np.asarray(mv, dtype=np.float64) * self.px_per_mv
        x, y = np.broadcast_arrays(x, y)
        if self.rotation_deg:
            x, y = rotate_points(x, y, self.rotation_deg, self.width_px, self.height_px)
        return x, y

    def to_dict(self) -> dict:
        """JSON-ready dictionary (tuples become lists)."""
        return asdict(self)


def rotate_points(
    x: np.ndarray, y: np.ndarray, angle_deg: float, width_px: int, height_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """Where points land when the image is rotated `angle_deg` counter-clockwise about its centre (PIL's rotate)."""
    a = math.radians(angle_deg)
    cx, cy = width_px / 2.0, height_px / 2.0
    dx, dy = np.asarray(x, dtype=np.float64) - cx, np.asarray(y, dtype=np.float64) - cy
    return cx + dx * math.cos(a) + dy * math.sin(a), cy - dx * math.sin(a) + dy * math.cos(a)


def compute_layout(config: RenderConfig) -> RenderLayout:
    """Lay out the page for `config` (independent of the record: a short record just leaves panels part empty)."""
    page_w, page_h = PAGE_SIZES_MM[config.page]
    if config.image_size_px is None:
        s = config.dpi / 25.4
        width, height = round(page_w * s), round(page_h * s)
        off_x = off_y = 0.0
    else:
        height, width = config.image_size_px
        s = min(width / page_w, height / page_h)
        off_x, off_y = (width - page_w * s) / 2.0, (height - page_h * s) / 2.0

    grid_rows, rhythm = LAYOUTS[config.layout]
    n_rows, n_cols = len(grid_rows) + len(rhythm), len(grid_rows[0])
    duration = config.row_duration_s_effective
    col_s = duration / n_cols
    trace_w_mm = duration * config.paper_speed_mm_s
    x0_mm = (page_w - CALIBRATION_AREA_MM - trace_w_mm) / 2.0 + CALIBRATION_AREA_MM
    room_h = page_h - MARGIN_TOP_MM - MARGIN_BOTTOM_MM
    pitch_mm = float(math.floor(room_h / n_rows))
    top_mm = MARGIN_TOP_MM + (room_h - pitch_mm * n_rows) / 2.0

    def px(x_mm: float, y_mm: float) -> tuple[float, float]:
        return off_x + x_mm * s, off_y + y_mm * s

    panels, pulses = [], []
    rows = [(names, False) for names in grid_rows] + [((name,), True) for name in rhythm]
    for r, (names, is_rhythm) in enumerate(rows):
        base_mm = top_mm + (r + 0.5) * pitch_mm
        y0 = px(0, base_mm - pitch_mm / 2)[1]
        y1 = px(0, base_mm + pitch_mm / 2)[1]
        base = px(0, base_mm)[1]
        for c, name in enumerate(names):
            span_s = duration if is_rhythm else col_s
            start_s = 0.0 if is_rhythm else c * col_s
            left_mm = x0_mm + start_s * config.paper_speed_mm_s
            x0 = px(left_mm, 0)[0]
            x1 = px(left_mm + span_s * config.paper_speed_mm_s, 0)[0]
            label = px(left_mm + 1.0, base_mm + 4.0)
            panels.append(LeadPanel(name, r, c, is_rhythm, start_s, span_s, (x0, y0, x1, y1), base, label))
        rise_mm = x0_mm + CALIBRATION_RISE_MM
        pulses.append(
            CalibrationPulse(
                row=r,
                x_start_px=px(x0_mm - CALIBRATION_AREA_MM, 0)[0],
                x_rise_px=px(rise_mm, 0)[0],
                x_fall_px=px(rise_mm + CALIBRATION_WIDTH_S * config.paper_speed_mm_s, 0)[0],
                x_end_px=px(x0_mm + CALIBRATION_END_MM, 0)[0],
                baseline_y_px=base,
                top_y_px=px(0, base_mm - CALIBRATION_MV * config.gain_mm_per_mv)[1],
            )
        )
    return RenderLayout(
        width_px=int(width),
        height_px=int(height),
        px_per_mm=s,
        px_per_s=config.paper_speed_mm_s * s,
        px_per_mv=config.gain_mm_per_mv * s,
        page_box_px=(off_x, off_y, off_x + page_w * s, off_y + page_h * s),
        grid_origin_px=px(x0_mm, top_mm + 0.5 * pitch_mm),
        panels=tuple(panels),
        calibration=tuple(pulses),
    )
