"""Vector (SVG / PDF) and matplotlib-PNG export of a rendered ECG, with the raster path's exact geometry.

A matplotlib `Figure` is built straight from the shared `RenderLayout` in pixel coordinates (the axes
span the image, y downwards, figure dpi = px_per_mm x 25.4), so a PNG saved from it has the raster
image's size and every line at the same place, and SVG / PDF pages have the true paper size in mm.
Grid and traces are `LineCollection`s (one per grid level, one per row clipped at its band), labels
are DejaVu Sans text like the raster template. No pyplot: no global figure state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .ecg import LEADS, Ecg
from .render_layout import GRID_COLOURS, RenderConfig, RenderLayout, compute_layout
from .render_raster import (
    calibration_polyline,
    label_size_px,
    panel_polyline,
    scale_text,
    scale_text_xy,
    trace_width_px,
)

VECTOR_FORMATS = (".svg", ".pdf", ".png")
_EPS = 1e-6


def _rgb(c: tuple[int, int, int]) -> tuple[float, float, float]:
    return tuple(v / 255.0 for v in c)


def _grid_segments(layout: RenderLayout, step_mm: float) -> np.ndarray:
    """(n, 2, 2) segments of a grid level across the page, anchored at the grid origin."""
    px0, py0, px1, py1 = layout.page_box_px
    step = step_mm * layout.px_per_mm
    ox, oy = layout.grid_origin_px
    xs = ox + step * np.arange(np.ceil((px0 - ox) / step - _EPS), np.floor((px1 - ox) / step + _EPS) + 1)
    ys = oy + step * np.arange(np.ceil((py0 - oy) / step - _EPS), np.floor((py1 - oy) / step + _EPS) + 1)
    vertical = [((x, py0), (x, py1)) for x in xs]
    horizontal = [((px0, y), (px1, y)) for y in ys]
    return np.asarray(vertical + horizontal, dtype=np.float64)


def figure_ecg(ecg: Ecg, config: RenderConfig | None = None, layout: RenderLayout | None = None) -> Figure:
    """Build a matplotlib figure of `ecg` (not attached to pyplot); `layout` defaults to `compute_layout(config)`."""
    config = config or RenderConfig()
    layout = layout or compute_layout(config)
    w, h = layout.width_px, layout.height_px
    dpi = layout.px_per_mm * 25.4
    pt_per_px = 72.0 / dpi
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    fig.patch.set_facecolor(_rgb(config.letterbox_rgb))
    px0, py0, px1, py1 = layout.page_box_px
    ax.add_patch(Rectangle((px0, py0), px1 - px0, py1 - py0, facecolor=_rgb(config.paper_rgb), edgecolor="none"))
    if config.grid != "none":
        major, minor = GRID_COLOURS[config.grid]
        for step_mm, width_mm, colour in ((1.0, config.minor_line_mm, minor), (5.0, config.major_line_mm, major)):
            if width_mm > 0:
                lines = LineCollection(
                    _grid_segments(layout, step_mm),
                    linewidths=width_mm * layout.px_per_mm * pt_per_px,
                    colors=[_rgb(colour)],
                    antialiased=True,
                )
                ax.add_collection(lines)
    ink = _rgb(config.trace_rgb)
    lw = trace_width_px(config, layout) * pt_per_px
    if config.show_calibration:
        pulses = [np.column_stack(calibration_polyline(layout, r)) for r in range(len(layout.calibration))]
        ax.add_collection(LineCollection(pulses, linewidths=lw, colors=[ink], joinstyle="miter", capstyle="butt"))
    rows: dict[int, list[np.ndarray]] = {}
    for p in layout.panels:
        xs, ys = panel_polyline(ecg.signal[LEADS.index(p.lead)], ecg.fs, p, layout)
        if xs.size:
            rows.setdefault(p.row, []).append(np.column_stack([xs, ys]))
    for r, segments in rows.items():
        y0, y1 = next(p.box_px[1::2] for p in layout.panels if p.row == r)
        lines = LineCollection(segments, linewidths=lw, colors=[ink], joinstyle="round", capstyle="butt")
        lines.set_gid(f"traces-row-{r}")  # an id on the SVG group; lets callers find and update the traces
        ax.add_collection(lines)
        lines.set_clip_path(Rectangle((0, y0), w, y1 - y0, transform=ax.transData))  # the row's channel
    font_pt = label_size_px(config, layout) * pt_per_px
    text_style = dict(fontsize=font_pt, family="DejaVu Sans", color=ink, ha="left", va="top")
    if config.show_labels:
        for p in layout.panels:
            ax.text(*p.label_xy_px, p.lead, **text_style)
    if config.show_scale_text:
        ax.text(*scale_text_xy(layout), scale_text(config), **text_style)
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """Draw the figure with Agg and return its (H, W, 3) uint8 RGB pixels."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_ecg_vector(ecg: Ecg, path: Path, config: RenderConfig) -> Path:
    """Write `ecg` to `path` (.svg, .pdf or .png, chosen by suffix) through matplotlib; returns `path`."""
    suffix = path.suffix.lower()
    if suffix not in VECTOR_FORMATS:
        raise ValueError(f"{path}: save_ecg writes {', '.join(VECTOR_FORMATS)}, not {suffix or 'no suffix'!r}")
    layout = compute_layout(config)
    fig = figure_ecg(ecg, config, layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Date": None} if suffix in (".svg", ".pdf") else None  # no timestamp and fixed ids:
    with rc_context({"svg.hashsalt": "vlm_ecg"}):  # the same input gives the same file
        fig.savefig(
            path, format=suffix[1:], dpi=layout.px_per_mm * 25.4, facecolor=fig.get_facecolor(), metadata=metadata
        )
    return path
