"""Numpy rasterisation for the fast render path: the cached page template and the trace line drawer.

Traces: an ECG trace is a function of x, so a 1-px polyline through its samples is, per pixel column,
one vertical run from the lowest to the highest y the polyline takes inside that column (the samples
that fall in the column plus the line's values at the column's two edges, where it enters and leaves).
Consecutive runs touch, so the line is gap-free however steep it is, and everything is a handful of
vectorised numpy calls over the samples and columns, no per-pixel Python and no per-segment Bresenham.
Lines wider than 1 px are the Minkowski sum with a square brush centred on the line (runs widened by
a min/max filter across neighbouring columns, extended vertically). Pixels are either fully inked or not (aliased):
at a 1-2 px line width anti-aliasing changes nothing a model or a reader needs, and costs time.

Clipping: runs are cut to the row's band, like matplotlib's clip box (a pen cannot leave its channel);
nothing wraps. A panel only holds the samples of its own time window, so no x clipping is needed.

Template: paper, grid (exact-area anti-aliased lines, so a 0.1 mm line at 3.7 px/mm is drawn faint
rather than dropped or fattened), calibration pulses, lead labels and the speed/gain line are drawn
once per `RenderConfig` and cached; every image starts as a copy of it.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .render_layout import GRID_COLOURS, LeadPanel, RenderConfig, RenderLayout, compute_layout

logger = logging.getLogger(__name__)

_EPS = 1e-6


@dataclass(frozen=True)
class PageTemplate:
    """Cached per-config drawing: the full template, the grid-only page, and its ink (labels, pulses, text).

    `ink_index` / `ink_alpha` list the flat pixel indices (into H*W) of the ink and its coverage, so
    grid-colour augmentation can recolour the grid and lay the ink back on top without redrawing text.
    """

    image: np.ndarray
    grid: np.ndarray
    ink_index: np.ndarray
    ink_alpha: np.ndarray


def trace_width_px(config: RenderConfig, layout: RenderLayout) -> int:
    """The trace width in whole pixels (at least 1)."""
    return max(1, int(round(config.trace_width_mm * layout.px_per_mm)))


# ---------------------------------------------------------------------------------------------- traces
def column_runs(
    xs: np.ndarray, ys: np.ndarray, band_y: tuple[float, float], width_px: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertical pixel runs that draw the polyline (xs, ys) with a square brush, clipped to a horizontal band.

    A pixel is inked when its centre lies within `width_px` / 2 (in x and in y) of the polyline, so a
    line's ink is centred on it for odd and even widths alike.

    Args:
        xs: (n,) increasing x of the vertices in pixels (equal x is allowed: a vertical edge).
        ys: (n,) y of the vertices in pixels.
        band_y: (y0, y1): rows whose centre lies outside [y0, y1) are not inked (the row's channel).
        width_px: line width in pixels.

    Returns:
        (columns, top_rows, bottom_rows), int arrays of equal length: each column is inked from its top
        row to its bottom row inclusive. Columns may fall outside the image; `runs_to_index` drops them.
    """
    empty = np.zeros(0, dtype=np.int64)
    if xs.size == 0:
        return empty, empty, empty
    w = int(width_px)
    if w % 2 == 0:  # an even brush is centred on a pixel edge: work on cells shifted by half a pixel
        xs = xs + 0.5
    c0, c1 = math.floor(xs[0]), math.floor(xs[-1]) + 1  # unit cells c0 .. c1 - 1
    edges = np.arange(c0, c1 + 1, dtype=np.float64)
    y_edges = np.interp(edges, xs, ys)  # the line where it crosses each cell edge (clamped at the ends)
    lo = np.minimum(y_edges[:-1], y_edges[1:])
    hi = np.maximum(y_edges[:-1], y_edges[1:])
    k = np.searchsorted(xs, edges, side="left")  # vertices in cell j: k[j] .. k[j + 1] - 1
    has = k[1:] > k[:-1]
    if has.any():
        starts = k[:-1][has]
        seg = ys[: k[-1]]
        lo[has] = np.minimum(lo[has], np.minimum.reduceat(seg, starts))
        hi[has] = np.maximum(hi[has], np.maximum.reduceat(seg, starts))
    if w > 1:  # column c gathers cells c - (w - 1) // 2 .. c + w // 2: a min/max filter of length w
        n, pad = lo.size, w - 1
        lo_p = np.concatenate([np.full(pad, np.inf), lo, np.full(pad, np.inf)])
        hi_p = np.concatenate([np.full(pad, -np.inf), hi, np.full(pad, -np.inf)])
        lo, hi = lo_p[: n + pad].copy(), hi_p[: n + pad].copy()
        for m in range(1, w):
            np.minimum(lo, lo_p[m : m + n + pad], out=lo)
            np.maximum(hi, hi_p[m : m + n + pad], out=hi)
        c0 -= w // 2
    cols = np.arange(c0, c0 + lo.size, dtype=np.int64)
    top = np.ceil(lo - w / 2.0 - 0.5).astype(np.int64)
    bottom = np.ceil(hi + w / 2.0 - 0.5).astype(np.int64) - 1
    r0, r1 = math.ceil(band_y[0] - 0.5), math.ceil(band_y[1] - 0.5) - 1
    keep = (bottom >= r0) & (top <= r1)
    return cols[keep], np.maximum(top[keep], r0), np.minimum(bottom[keep], r1)


def runs_to_index(cols: np.ndarray, top: np.ndarray, bottom: np.ndarray, width: int, height: int) -> np.ndarray:
    """Flat pixel indices (row * width + col) of all pixels covered by the runs, inside the image."""
    ok = (cols >= 0) & (cols < width)
    cols, top, bottom = cols[ok], np.maximum(top[ok], 0), np.minimum(bottom[ok], height - 1)
    lengths = bottom - top + 1
    ok = lengths > 0
    cols, top, lengths = cols[ok], top[ok], lengths[ok]
    if lengths.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    rows = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts - top, lengths)
    return rows * width + np.repeat(cols, lengths)


def panel_polyline(
    signal_mv: np.ndarray, fs: float, panel: LeadPanel, layout: RenderLayout
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (x, y) in pixels of one lead's samples inside its panel's window [start_s, start_s + duration_s]."""
    i0 = max(0, math.ceil(panel.start_s * fs - _EPS))
    i1 = min(signal_mv.size - 1, math.floor((panel.start_s + panel.duration_s) * fs + _EPS))
    if i1 < i0:
        return np.zeros(0), np.zeros(0)
    idx = np.arange(i0, i1 + 1, dtype=np.float64)
    xs = panel.box_px[0] + (idx / fs - panel.start_s) * layout.px_per_s
    ys = panel.baseline_y_px - signal_mv[i0 : i1 + 1].astype(np.float64) * layout.px_per_mv
    return xs, ys


def calibration_polyline(layout: RenderLayout, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of a row's calibration pulse: baseline, rise, 200 ms at +1 mV, fall, baseline."""
    p = layout.calibration[row]
    xs = np.array([p.x_start_px, p.x_rise_px, p.x_rise_px, p.x_fall_px, p.x_fall_px, p.x_end_px])
    ys = np.array([p.baseline_y_px, p.baseline_y_px, p.top_y_px, p.top_y_px, p.baseline_y_px, p.baseline_y_px])
    return xs, ys


# ---------------------------------------------------------------------------------------------- template
def _line_coverage(n_px: int, centres: np.ndarray, width: float) -> np.ndarray:
    """(n_px,) fraction of each pixel covered by lines of `width` px at `centres` (exact area, capped at 1)."""
    cov = np.zeros(n_px, dtype=np.float64)
    if width <= 0 or centres.size == 0:
        return cov
    a, b = centres - width / 2.0, centres + width / 2.0
    for lo, hi in zip(a, b, strict=True):
        i0, i1 = max(0, math.floor(lo)), min(n_px, math.ceil(hi))
        if i1 <= i0:
            continue
        px = np.arange(i0, i1)
        cov[i0:i1] += np.clip(np.minimum(px + 1, hi) - np.maximum(px, lo), 0.0, 1.0)
    return np.minimum(cov, 1.0)


def _grid_alpha(layout: RenderLayout, step_mm: float, width_mm: float) -> np.ndarray:
    """(H, W) coverage of a square grid with lines every `step_mm`, anchored at the grid origin, inside the page."""
    px0, py0, px1, py1 = layout.page_box_px
    step, width = step_mm * layout.px_per_mm, width_mm * layout.px_per_mm
    ox, oy = layout.grid_origin_px

    def centres(origin: float, lo: float, hi: float) -> np.ndarray:
        k = np.arange(math.ceil((lo - origin) / step - _EPS), math.floor((hi - origin) / step + _EPS) + 1)
        return origin + k * step

    cx = _line_coverage(layout.width_px, centres(ox, px0, px1), width)
    cy = _line_coverage(layout.height_px, centres(oy, py0, py1), width)
    alpha = 1.0 - (1.0 - cy[:, None]) * (1.0 - cx[None, :])
    inside = np.zeros_like(alpha, dtype=bool)
    inside[math.floor(py0) : math.ceil(py1), math.floor(px0) : math.ceil(px1)] = True
    return np.where(inside, alpha, 0.0)


def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans, matplotlib's default font (so raster and vector labels match), else PIL's default."""
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size_px)
    return ImageFont.load_default(size_px)


def scale_text(config: RenderConfig) -> str:
    """The speed / gain line printed under the traces."""
    return f"{config.paper_speed_mm_s:g} mm/s    {config.gain_mm_per_mv:g} mm/mV"


def scale_text_xy(layout: RenderLayout) -> tuple[float, float]:
    """Top-left of the speed / gain line: under the last row, aligned with the calibration pulses."""
    bottom = max(p.box_px[3] for p in layout.panels)
    return layout.calibration[0].x_start_px, bottom + 2.0 * layout.px_per_mm


def label_size_px(config: RenderConfig, layout: RenderLayout) -> int:
    """Font size of labels in pixels (at least 6 px so that a 512 px image still carries them)."""
    return max(6, int(round(config.label_size_mm * layout.px_per_mm)))


def _ink_alpha(config: RenderConfig, layout: RenderLayout) -> np.ndarray:
    """(H, W) coverage of everything printed in trace colour on the template: pulses, labels, scale text."""
    h, w = layout.height_px, layout.width_px
    text = Image.new("L", (w, h), 0)
    if config.show_labels or config.show_scale_text:
        draw = ImageDraw.Draw(text)
        font = _font(label_size_px(config, layout))
        if config.show_labels:
            for p in layout.panels:
                draw.text(p.label_xy_px, p.lead, fill=255, font=font, anchor="lt")
        if config.show_scale_text:
            draw.text(scale_text_xy(layout), scale_text(config), fill=255, font=font, anchor="lt")
    alpha = np.asarray(text, dtype=np.float32) / 255.0
    if config.show_calibration:
        width = trace_width_px(config, layout)
        flat = alpha.reshape(-1)
        for row in range(len(layout.calibration)):
            xs, ys = calibration_polyline(layout, row)
            flat[runs_to_index(*column_runs(xs, ys, (0.0, float(h)), width), w, h)] = 1.0
    return alpha


@functools.lru_cache(maxsize=16)
def page_template(config: RenderConfig) -> PageTemplate:
    """Draw (once per config) the page without traces. The arrays are read-only: copy before drawing."""
    layout = compute_layout(config)
    h, w = layout.height_px, layout.width_px
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = config.letterbox_rgb
    px0, py0, px1, py1 = (int(round(v)) for v in layout.page_box_px)
    img[py0:py1, px0:px1] = config.paper_rgb
    if config.grid != "none":
        major, minor = (np.asarray(c, dtype=np.float32) for c in GRID_COLOURS[config.grid])
        for step_mm, width_mm, colour in ((1.0, config.minor_line_mm, minor), (5.0, config.major_line_mm, major)):
            a = _grid_alpha(layout, step_mm, width_mm).astype(np.float32)[..., None]
            img = img * (1.0 - a) + colour * a
    grid = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    ink = _ink_alpha(config, layout)
    a = ink[..., None]
    full = np.clip(np.rint(grid * (1.0 - a) + np.asarray(config.trace_rgb, dtype=np.float32) * a), 0, 255)
    ink_index = np.flatnonzero(ink.reshape(-1) > 0)
    tpl = PageTemplate(full.astype(np.uint8), grid, ink_index, ink.reshape(-1)[ink_index].astype(np.float32))
    for arr in (tpl.image, tpl.grid, tpl.ink_index, tpl.ink_alpha):
        arr.flags.writeable = False
    logger.debug("drew page template %dx%d for %s", w, h, config)
    return tpl
