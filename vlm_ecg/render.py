"""Signals to a standard clinical 12-lead paper image: the public rendering API.

    from vlm_ecg.render import RenderConfig, render_ecg, render_ecg_with_layout, save_ecg
    img = render_ecg(ecg)                                         # (1700, 2200, 3) uint8, letter at 200 dpi
    img = render_ecg(ecg, RenderConfig(image_size_px=1024))       # model input: page letterboxed in 1024 x 1024
    img, layout = render_ecg_with_layout(ecg, RenderConfig(layout="6x2", gain_mm_per_mv=5))
    x, y = layout.to_pixels("V2", t_s=1.2, mv=0.3)                # draw explanations back onto the image
    save_ecg(ecg, "ecg.pdf")                                      # vector copy for people (matplotlib)

The raster path is pure numpy on a cached page template (`vlm_ecg.render_raster` explains the line
drawer), 30-60x faster than matplotlib drawing the same page; `bench/bench_render.py` measures it. Geometry lives in
`vlm_ecg.render_layout` and is shared with the vector path, so both put every trace at the same place.

Records are drawn as they are, at their own sampling rate and length: the first `row_duration_s` seconds
(10 s by default) fill the page, a shorter record leaves the end of its panels empty, nothing is resampled.
Standardise first (`ecg.standardize()`) when every image must show exactly the same span.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from .ecg import LEADS, Ecg
from .render_augment import AugmentConfig, augment_image, baseline_offsets, jittered_page
from .render_layout import (
    GRID_COLOURS,
    LAYOUTS,
    PAGE_SIZES_MM,
    CalibrationPulse,
    LeadPanel,
    RenderConfig,
    RenderLayout,
    compute_layout,
)
from .render_raster import column_runs, page_template, panel_polyline, runs_to_index, trace_width_px

__all__ = [
    "GRID_COLOURS",
    "LAYOUTS",
    "PAGE_SIZES_MM",
    "AugmentConfig",
    "CalibrationPulse",
    "LeadPanel",
    "RenderConfig",
    "RenderLayout",
    "compute_layout",
    "render_ecg",
    "render_ecg_with_layout",
    "save_ecg",
]

logger = logging.getLogger(__name__)

_LEAD_ROW = {name: i for i, name in enumerate(LEADS)}


@functools.lru_cache(maxsize=16)
def _layout(config: RenderConfig) -> RenderLayout:
    return compute_layout(config)


def _as_ecg(ecg: Ecg | np.ndarray, fs_hz: float | None) -> Ecg:
    """Accept an `Ecg`, or a (12, n) mV array with its rate (validated by `Ecg`, which raises typed errors)."""
    if isinstance(ecg, Ecg):
        return ecg
    if isinstance(ecg, np.ndarray):
        if fs_hz is None:
            raise TypeError("rendering a bare array needs fs_hz (its sampling rate in Hz)")
        return Ecg(ecg, fs_hz, {"source": "<array>"})
    raise TypeError(f"render_ecg takes an Ecg or a (12, n) numpy array, got {type(ecg).__name__}")


def render_ecg_with_layout(
    ecg: Ecg | np.ndarray,
    config: RenderConfig | None = None,
    *,
    fs_hz: float | None = None,
    augment: AugmentConfig | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, RenderLayout]:
    """Render `ecg` and return the image with its geometry.

    Args:
        ecg: the record, or a (12, n) float array in mV (leads in `LEADS` order) with `fs_hz`.
        config: page, layout, scales and colours (default: 3x4+II, letter, 200 dpi, red grid).
        fs_hz: sampling rate of a bare array; ignored for an `Ecg`.
        augment: training augmentations (None or all-zero: none); needs `rng`.
        rng: the source of every random choice of `augment`.

    Returns:
        image: (H, W, 3) uint8 RGB.
        layout: `RenderLayout` with the panel boxes and px_per_mm / px_per_s / px_per_mv scales; its
            `rotation_deg` records an augmentation rotation, which `layout.to_pixels` applies.

    Raises:
        EcgLeadError, EcgSignalError: bad array input (wrong lead count, empty, NaN gaps, ...).
    """
    config = config or RenderConfig()
    record = _as_ecg(ecg, fs_hz)
    aug = augment if augment is not None and augment.enabled else None
    if aug is not None and rng is None:
        raise ValueError("augmentation needs an explicit np.random.Generator (rng=np.random.default_rng(seed))")
    layout = _layout(config)
    tpl = page_template(config)
    signal = record.signal
    img = tpl.image.copy() if aug is None else jittered_page(tpl, aug, config.trace_rgb, rng)
    if aug is not None:
        offsets = baseline_offsets(aug, signal.shape[0], rng)
        if offsets is not None:
            signal = signal + offsets
    width = trace_width_px(config, layout)
    parts = []
    for p in layout.panels:
        xs, ys = panel_polyline(signal[_LEAD_ROW[p.lead]], record.fs, p, layout)
        parts.append(column_runs(xs, ys, (p.box_px[1], p.box_px[3]), width))
    cols, top, bottom = (np.concatenate(a) for a in zip(*parts, strict=True))
    img.reshape(-1, 3)[runs_to_index(cols, top, bottom, layout.width_px, layout.height_px)] = config.trace_rgb
    if aug is not None:
        img, angle = augment_image(img, aug, rng, config.letterbox_rgb)
        if angle:
            layout = replace(layout, rotation_deg=angle)
    return img, layout


def render_ecg(
    ecg: Ecg | np.ndarray,
    config: RenderConfig | None = None,
    *,
    fs_hz: float | None = None,
    augment: AugmentConfig | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Render `ecg` as a 12-lead paper image, (H, W, 3) uint8 RGB. See `render_ecg_with_layout` for arguments."""
    return render_ecg_with_layout(ecg, config, fs_hz=fs_hz, augment=augment, rng=rng)[0]


def save_ecg(ecg: Ecg, path: str | Path, config: RenderConfig | None = None) -> Path:
    """Write `ecg` as .svg / .pdf (vector) or .png (rasterised by matplotlib) with the raster path's geometry.

    For fast PNG/JPEG files of the raster image, encode `render_ecg`'s array with PIL instead.
    """
    from .render_vector import save_ecg_vector

    return save_ecg_vector(ecg, Path(path), config or RenderConfig())
