"""Geometry of the raster renderer on synthetic ECGs whose drawing is known in advance (steps, sines, levels)."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_ecg.ecg import LEADS, Ecg
from vlm_ecg.render import LAYOUTS, RenderConfig, compute_layout, render_ecg, render_ecg_with_layout

FS = 500.0
# Bare traces: no grid, labels or text, a 1-px line, so every dark pixel is a trace or a calibration pulse.
BARE = dict(grid="none", show_labels=False, show_scale_text=False, trace_width_mm=0.01)


def make_ecg(fn=None, duration_s: float = 10.0, fs: float = FS) -> Ecg:
    """12 leads from fn(t, lead_index) -> mV (default 0 mV), plus a 0.01 mV last sample (`Ecg` refuses flat leads)."""
    t = np.arange(int(round(duration_s * fs))) / fs
    sig = np.zeros((12, t.size), dtype=np.float32)
    if fn is not None:
        for i in range(12):
            sig[i] = fn(t, i)
    sig[:, -1] += 0.01
    return Ecg(sig, fs, {"id": "synthetic"})


def dark(img: np.ndarray) -> np.ndarray:
    return img.max(axis=-1) < 128


def column_centre(mask: np.ndarray, col: int, rows: slice) -> float:
    """Mean row of the dark pixels in one column (within `rows`)."""
    r = np.flatnonzero(mask[rows, col]) + (rows.start or 0)
    assert r.size, f"no trace pixel in column {col}"
    return float(r.mean()) + 0.5  # pixel r covers [r, r + 1)


def panel_rows(panel) -> slice:
    return slice(int(np.floor(panel.box_px[1])), int(np.ceil(panel.box_px[3])))


@pytest.mark.parametrize("gain", [5.0, 10.0, 20.0])
@pytest.mark.parametrize("size", [None, 1024])
def test_one_millivolt_step_is_gain_mm_tall(gain, size):
    ecg = make_ecg(lambda t, i: np.where(t >= 5.0, 1.0, 0.0))
    img, lay = render_ecg_with_layout(ecg, RenderConfig(gain_mm_per_mv=gain, image_size_px=size, **BARE))
    p = lay.panel("II", rhythm=True)
    mask, rows = dark(img), panel_rows(p)
    before = column_centre(mask, int(p.box_px[0] + 2.0 * lay.px_per_s), rows)
    after = column_centre(mask, int(p.box_px[0] + 8.0 * lay.px_per_s), rows)
    assert lay.px_per_mv == pytest.approx(gain * lay.px_per_mm)
    assert before - after == pytest.approx(gain * lay.px_per_mm, abs=1.0)
    assert before == pytest.approx(p.baseline_y_px, abs=1.0)


@pytest.mark.parametrize("speed", [25.0, 50.0])
def test_one_hertz_sine_has_a_period_of_speed_mm(speed):
    ecg = make_ecg(lambda t, i: np.sin(2 * np.pi * t))
    img, lay = render_ecg_with_layout(ecg, RenderConfig(paper_speed_mm_s=speed, **BARE))
    p = lay.panel("II", rhythm=True)
    mask, rows = dark(img), panel_rows(p)
    cols = np.arange(int(np.ceil(p.box_px[0])), int(p.box_px[2]))
    top = np.array([np.flatnonzero(mask[rows, c]).min() for c in cols])
    peaks = cols[np.flatnonzero(top == top.min())]
    # one run of columns per crest: take each crest's centre
    crest = np.split(peaks, np.flatnonzero(np.diff(peaks) > 5) + 1)
    centres = np.array([c.mean() for c in crest])
    assert len(centres) == int(p.duration_s)  # one crest per second shown
    assert np.diff(centres).mean() == pytest.approx(speed * lay.px_per_mm, abs=1.0)
    assert lay.px_per_s == pytest.approx(speed * lay.px_per_mm)


def test_panels_hold_their_own_lead_where_the_layout_says():
    """Each lead is a distinct constant; every panel's trace sits at baseline - level * px_per_mv."""
    levels = {name: 0.06 * (i - 5.5) for i, name in enumerate(LEADS)}  # within +-0.33 mV: unclipped in 12x1
    ecg = make_ecg(lambda t, i: np.full_like(t, levels[LEADS[i]]))
    for layout_name in LAYOUTS:
        img, lay = render_ecg_with_layout(ecg, RenderConfig(layout=layout_name, **BARE))
        mask = dark(img)
        grid_rows, rhythm = LAYOUTS[layout_name]
        assert [p.lead for p in lay.panels if not p.rhythm] == [name for row in grid_rows for name in row]
        assert [p.lead for p in lay.panels if p.rhythm] == list(rhythm)
        covered = np.zeros_like(mask)
        for p in lay.panels:
            mid = int((p.box_px[0] + p.box_px[2]) / 2)
            expected = p.baseline_y_px - levels[p.lead] * lay.px_per_mv
            assert column_centre(mask, mid, panel_rows(p)) == pytest.approx(expected, abs=1.0), (layout_name, p.lead)
            x0, y0, x1, y1 = p.box_px
            covered[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1)) + 1] = True
        for c in lay.calibration:
            covered[int(c.top_y_px) - 1 : int(c.baseline_y_px) + 2, int(c.x_start_px) : int(c.x_end_px) + 2] = True
        assert not (mask & ~covered).any(), f"{layout_name}: ink outside every panel and pulse"


def test_columns_show_consecutive_windows_and_the_rhythm_strip_spans_ten_seconds():
    lay = compute_layout(RenderConfig())
    for name, start in (("I", 0.0), ("aVR", 2.5), ("V1", 5.0), ("V4", 7.5)):
        p = lay.panel(name)
        assert (p.start_s, p.duration_s) == (start, 2.5)
        assert p.box_px[0] == pytest.approx(lay.panel("I").box_px[0] + start * lay.px_per_s)
    ecg = make_ecg(lambda t, i: 0.5 * np.sin(2 * np.pi * 1.3 * t))
    img, lay = render_ecg_with_layout(ecg, RenderConfig(**BARE))
    p = lay.panel("II", rhythm=True)
    cols = np.flatnonzero(dark(img)[panel_rows(p)].any(axis=0))
    trace_cols = cols[cols >= p.box_px[0] - 1]  # right of the calibration pulse
    assert p.duration_s == 10.0
    assert trace_cols.max() - trace_cols.min() == pytest.approx(10.0 * lay.px_per_s, abs=1.0)


@pytest.mark.parametrize("size", [None, 512])
def test_calibration_pulse_is_200_ms_wide_and_1_mv_tall(size):
    img, lay = render_ecg_with_layout(make_ecg(), RenderConfig(image_size_px=size, **BARE))
    mask = dark(img)
    for c in lay.calibration:
        region = mask[:, int(c.x_start_px) : int(np.ceil(c.x_end_px)) + 1]
        rows = np.flatnonzero(region.any(axis=1))
        rows = rows[(rows > c.top_y_px - 3) & (rows < c.baseline_y_px + 3)]
        top_cols = np.flatnonzero(region[rows.min()])
        assert rows.max() - rows.min() == pytest.approx(10.0 * lay.px_per_mm, abs=1.0)
        assert top_cols.max() - top_cols.min() == pytest.approx(5.0 * lay.px_per_mm, abs=1.0)
        assert c.x_fall_px - c.x_rise_px == pytest.approx(5.0 * lay.px_per_mm)


def test_trace_is_gap_free_and_steep_edges_are_filled():
    """A one-sample 1.4 mV spike (7 mm at 5 mm/mV) still draws one connected line from baseline to tip."""
    ecg = make_ecg(lambda t, i: np.where(np.abs(t - 1.0) < 0.001, 1.4, 0.0))
    img, lay = render_ecg_with_layout(ecg, RenderConfig(layout="12x1", gain_mm_per_mv=5.0, **BARE))
    p = lay.panel("I")
    mask = dark(img)[panel_rows(p)]
    cols = np.flatnonzero(mask.any(axis=0))
    cols = cols[cols >= p.box_px[0] - 1]
    assert np.all(np.diff(cols) == 1), "a trace column is empty"
    tip = np.flatnonzero(mask.any(axis=1)).min() + panel_rows(p).start
    assert p.baseline_y_px - tip == pytest.approx(1.4 * lay.px_per_mv, abs=1.0)


def test_traces_are_clipped_at_their_row_band_not_wrapped():
    """+-15 mV plateaus (1.0-1.5 s) leave their band: the strokes stop at the band edge, the plateau is cut away."""
    level = {0: 15.0, 1: -15.0}  # lead I up out of the first row, lead II down into the third
    ecg = make_ecg(lambda t, i: np.where((t > 1.0) & (t < 1.5), level.get(i, 0.0), 0.0))
    img, lay = render_ecg_with_layout(ecg, RenderConfig(**BARE))
    mask = dark(img)
    for name, edge in (("I", "top"), ("II", "bottom")):
        p = lay.panel(name)
        rows = panel_rows(p)
        c = int(p.box_px[0] + 1.0 * lay.px_per_s)
        rise = mask[:, c - 1 : c + 3].any(axis=1)
        inked = np.flatnonzero(rise[rows]) + rows.start
        y0, y1 = p.box_px[1], p.box_px[3]  # rows whose centre lies in [y0, y1) belong to the band
        band_edge = int(np.ceil(y0 - 0.5)) if edge == "top" else int(np.ceil(y1 - 0.5)) - 1
        assert band_edge in inked, f"{name}: the stroke reaches the {edge} of its band"
        if edge == "top":
            assert not rise[: rows.start].any(), "ink above the first row"
        else:
            below = panel_rows(lay.panel("III"))
            inked_below = np.flatnonzero(rise[below]) + below.start
            assert np.abs(inked_below - lay.panel("III").baseline_y_px).max() < 2, "lead II ran into lead III's band"
        plateau = int(p.box_px[0] + 1.25 * lay.px_per_s)
        assert not mask[rows, plateau].any(), f"{name}: the off-band plateau is cut away, not wrapped or pinned"


def test_model_input_size_letterboxes_the_page_without_distortion():
    config = RenderConfig(image_size_px=(768, 1024), letterbox_rgb=(0, 0, 255), grid="red")
    img, lay = render_ecg_with_layout(make_ecg(), config)
    assert img.shape == (768, 1024, 3) and img.dtype == np.uint8
    x0, y0, x1, y1 = lay.page_box_px
    assert (x1 - x0) / (y1 - y0) == pytest.approx(279.4 / 215.9)
    assert lay.px_per_mm == pytest.approx(min(1024 / 279.4, 768 / 215.9))
    assert (x0 + x1) / 2 == pytest.approx(512) and (y0 + y1) / 2 == pytest.approx(384)
    assert y0 == 0 and y1 == 768  # height-limited: bars left and right
    assert (img[:, : int(x0) - 1] == (0, 0, 255)).all() and (img[:, int(np.ceil(x1)) + 1 :] == (0, 0, 255)).all()
    square, lay = render_ecg_with_layout(make_ecg(), RenderConfig(image_size_px=512, letterbox_rgb=(0, 0, 255)))
    x0, y0, x1, y1 = lay.page_box_px
    assert square.shape == (512, 512, 3) and (x0, x1) == (0, 512)  # width-limited: bars above and below
    assert (square[: int(y0) - 1] == (0, 0, 255)).all() and (square[int(np.ceil(y1)) + 1 :] == (0, 0, 255)).all()
    assert not (square[int(np.ceil(y0)) + 1 : int(y1) - 1] == (0, 0, 255)).all(axis=-1).any()


def test_page_sizes_match_paper_at_dpi():
    assert render_ecg(make_ecg(), RenderConfig(grid="none")).shape == (1700, 2200, 3)  # letter, 200 dpi
    lay = compute_layout(RenderConfig(page="a4", dpi=100))
    assert (lay.width_px, lay.height_px) == (round(297 / 25.4 * 100), round(210 / 25.4 * 100))
    assert lay.px_per_mm == pytest.approx(100 / 25.4)


def test_fifty_mm_per_second_shows_what_fits_and_refuses_what_cannot():
    lay = compute_layout(RenderConfig(paper_speed_mm_s=50.0))
    assert lay.panel("II", rhythm=True).duration_s == 5.0
    assert lay.panel("aVR").start_s == 1.25
    with pytest.raises(ValueError, match="wider than"):
        RenderConfig(paper_speed_mm_s=50.0, row_duration_s=10.0)


def test_short_records_leave_panels_empty_and_any_rate_is_drawn_natively():
    ecg = make_ecg(lambda t, i: np.full_like(t, 0.5), duration_s=4.0, fs=257.0)
    img, lay = render_ecg_with_layout(ecg, RenderConfig(**BARE))
    mask = dark(img)
    assert mask[panel_rows(lay.panel("aVR"))].any()  # 2.5-4 s drawn
    assert not mask[panel_rows(lay.panel("V1")), int(lay.panel("V1").box_px[0]) + 2 :].any()  # 5-7.5 s: nothing
    rhythm = lay.panel("II", rhythm=True)
    cols = np.flatnonzero(mask[panel_rows(rhythm)].any(axis=0))
    last_sample_s = (ecg.n_samples - 1) / ecg.fs
    assert cols.max() + 0.5 == pytest.approx(rhythm.box_px[0] + last_sample_s * lay.px_per_s, abs=1.0)


def test_grid_colours_and_line_spacing():
    img, lay = render_ecg_with_layout(make_ecg(), RenderConfig(grid="red", show_labels=False))
    x_major = lay.grid_origin_px[0] + 5 * lay.px_per_mm * np.arange(3)
    row = int(lay.grid_origin_px[1] + 2.5 * lay.px_per_mm)  # between major lines, on no trace
    for x in x_major:  # a 0.2 mm major line is 1.6 px wide at 200 dpi: the pixel under its centre is red
        r, g, b = img[row, int(x)]
        assert r == 255 and g < 90 and b < 90
    assert tuple(img[row, int(x_major[0] + 2.5 * lay.px_per_mm)]) == (255, 255, 255)  # paper between lines
    bw = render_ecg(make_ecg(), RenderConfig(grid="bw"))
    assert (bw[..., 0] == bw[..., 1]).all() and (bw[..., 1] == bw[..., 2]).all()
    blank = render_ecg(make_ecg(), RenderConfig(**BARE))
    assert ((blank == 0).all(axis=-1) | (blank == 255).all(axis=-1)).all()  # ink on paper, nothing else


def test_to_pixels_maps_time_and_millivolts_onto_the_drawn_trace():
    ecg = make_ecg(lambda t, i: 0.8 * np.sin(2 * np.pi * 0.7 * t + i))
    img, lay = render_ecg_with_layout(ecg, RenderConfig(image_size_px=1024, **BARE))
    mask = dark(img)
    for name in ("V2", "aVL"):
        p = lay.panel(name)
        t = np.linspace(p.start_s + 0.1, p.start_s + p.duration_s - 0.1, 7)
        x, y = lay.to_pixels(name, t, ecg.lead(name)[(t * FS).astype(int)])
        for xi, yi in zip(x.astype(int), y, strict=True):
            assert column_centre(mask, xi, panel_rows(p)) == pytest.approx(yi, abs=1.0)


def test_invalid_configs_are_refused():
    for bad in (dict(layout="4x3"), dict(grid="purple"), dict(page="a3"), dict(gain_mm_per_mv=0), dict(dpi=-1)):
        with pytest.raises(ValueError):
            RenderConfig(**bad)
    with pytest.raises(ValueError, match="image_size_px"):
        RenderConfig(image_size_px=(10, 10))
