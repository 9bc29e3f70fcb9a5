"""The raster path's line drawer against a brute-force reference, purity, bad input, and augmentations."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_ecg.ecg import Ecg
from vlm_ecg.errors import EcgLeadError, EcgSignalError
from vlm_ecg.render import AugmentConfig, RenderConfig, render_ecg, render_ecg_with_layout
from vlm_ecg.render_raster import column_runs, page_template, runs_to_index

FS = 500.0


def make_ecg(seed: int = 0, fs: float = FS, duration_s: float = 10.0) -> Ecg:
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * fs)) / fs
    phase = rng.uniform(0, 2 * np.pi, size=(12, 1))
    sig = 0.6 * np.sin(2 * np.pi * 1.1 * t + phase) + 0.05 * rng.standard_normal((12, t.size))
    return Ecg(sig.astype(np.float32), fs, {"id": f"random-{seed}"})


def reference_mask(xs, ys, width: int, shape) -> np.ndarray:
    """Brute force: sample the polyline densely and ink every pixel whose centre is within width/2 (square brush)."""
    mask = np.zeros(shape, dtype=bool)
    for i in range(len(xs) - 1):
        s = np.linspace(0.0, 1.0, 4000)
        px = xs[i] + s * (xs[i + 1] - xs[i])
        py = ys[i] + s * (ys[i + 1] - ys[i])
        c0 = np.ceil(px - width / 2 - 0.5).astype(int)
        r0 = np.ceil(py - width / 2 - 0.5).astype(int)
        for dc in range(width):
            for dr in range(width):
                mask[r0 + dr, c0 + dc] = True
    return mask


@pytest.mark.parametrize("width", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_column_runs_equal_a_brute_force_polyline(width, seed):
    rng = np.random.default_rng(seed)
    n = 40
    xs = 10.0 + np.cumsum(rng.uniform(0.0, 1.5, n))  # 0-3 vertices per pixel column, some sharing a column
    xs[5] = xs[4]  # a vertical edge
    ys = 30.0 + np.cumsum(rng.normal(0.0, 3.0, n))
    shape = (80, 90)
    cols, top, bottom = column_runs(xs, ys, (0.0, float(shape[0])), width)
    ours = np.zeros(shape, dtype=bool)
    ours.reshape(-1)[runs_to_index(cols, top, bottom, shape[1], shape[0])] = True
    ref = reference_mask(xs, ys, width, shape)
    # identical up to pixels the dense sampling grazes at a corner (ties on pixel edges)
    assert (ours ^ ref).sum() <= 2, f"{(ours & ~ref).sum()} extra, {(ref & ~ours).sum()} missing pixels"


def test_column_runs_clip_to_the_band_and_index_stays_inside_the_image():
    xs = np.array([-5.0, 3.0, 8.0, 14.0])
    ys = np.array([2.0, 40.0, -30.0, 5.0])
    cols, top, bottom = column_runs(xs, ys, (0.0, 10.0), 1)
    assert top.min() >= 0 and bottom.max() <= 9
    idx = runs_to_index(cols, top, bottom, 12, 10)
    assert idx.min() >= 0 and idx.max() < 120
    assert len(np.unique(idx)) == len(idx)


def test_render_is_pure_and_deterministic():
    ecg = make_ecg()
    before = ecg.signal.copy()
    config = RenderConfig(image_size_px=512)
    a = render_ecg(ecg, config)
    b = render_ecg(ecg, config)
    assert np.array_equal(a, b) and a is not b
    assert np.array_equal(ecg.signal, before)
    a[:] = 0  # the caller owns its image: the cached template is untouched
    assert np.array_equal(render_ecg(ecg, config), b)
    with pytest.raises(ValueError):
        page_template(config).image[0, 0] = 0


def test_bare_arrays_are_validated_with_typed_errors():
    good = make_ecg().signal
    assert render_ecg(good, RenderConfig(image_size_px=256), fs_hz=500).shape == (256, 256, 3)
    with pytest.raises(EcgLeadError, match="shape"):
        render_ecg(good[:11], fs_hz=500)
    with pytest.raises(EcgSignalError, match="samples"):
        render_ecg(np.zeros((12, 0), dtype=np.float32), fs_hz=500)
    nan = good.copy()
    nan[3, 100:400] = np.nan  # 600 ms gap: refused, not drawn as a hole
    with pytest.raises(EcgSignalError, match="NaN"):
        render_ecg(nan, fs_hz=500)
    with pytest.raises(TypeError, match="fs_hz"):
        render_ecg(good)
    with pytest.raises(TypeError):
        render_ecg("ecg.hea")


def test_augmentation_is_off_by_default_and_reproducible_from_the_generator():
    ecg = make_ecg()
    config = RenderConfig(image_size_px=512)
    plain = render_ecg(ecg, config)
    assert np.array_equal(render_ecg(ecg, config, augment=AugmentConfig(), rng=np.random.default_rng(0)), plain)
    aug = AugmentConfig(
        rotation_deg=2.0,
        noise_std=6.0,
        blur_sigma_px=0.8,
        jpeg_quality_min=60,
        grid_jitter=0.3,
        baseline_offset_mv=0.2,
    )
    a = render_ecg(ecg, config, augment=aug, rng=np.random.default_rng(7))
    b = render_ecg(ecg, config, augment=aug, rng=np.random.default_rng(7))
    c = render_ecg(ecg, config, augment=aug, rng=np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, plain)
    assert a.shape == plain.shape and a.dtype == np.uint8
    with pytest.raises(ValueError, match="Generator"):
        render_ecg(ecg, config, augment=aug)
    with pytest.raises(ValueError):
        AugmentConfig(noise_std=-1.0)


def test_rotation_is_reported_and_to_pixels_follows_it():
    t = np.arange(5000) / FS
    sig = np.tile(np.where((t > 4.0) & (t < 6.0), 1.0, 0.0).astype(np.float32), (12, 1))
    ecg = Ecg(sig, FS, {"id": "plateau"})
    config = RenderConfig(grid="none", show_labels=False, show_scale_text=False)
    img, lay = render_ecg_with_layout(
        ecg, config, augment=AugmentConfig(rotation_deg=3.0), rng=np.random.default_rng(3)
    )
    assert lay.rotation_deg != 0.0 and abs(lay.rotation_deg) <= 3.0
    dark = img.max(axis=-1) < 160
    ts = np.linspace(4.2, 5.8, 9)
    x, y = lay.to_pixels("II", ts, np.ones_like(ts), rhythm=True)
    for xi, yi in zip(x, y, strict=True):
        r, c = int(yi), int(xi)
        assert dark[r - 2 : r + 3, c - 2 : c + 3].any(), (xi, yi)
    straight = lay.__class__(**{**lay.__dict__, "rotation_deg": 0.0}).to_pixels("II", ts, np.ones_like(ts), True)
    assert np.abs(straight[1] - y).max() > 5  # the rotation moved these points measurably


def test_grid_jitter_recolours_the_grid_but_keeps_ink_black():
    ecg = make_ecg()
    config = RenderConfig(image_size_px=1024)
    plain, lay = render_ecg_with_layout(ecg, config)
    jit = render_ecg(ecg, config, augment=AugmentConfig(grid_jitter=0.5), rng=np.random.default_rng(1))
    ink = (plain == 0).all(axis=-1)
    assert (jit[ink] == 0).all()
    grid = (plain != 255).any(axis=-1) & ~ink
    assert (jit[grid] != plain[grid]).any()
    paper = (plain == 255).all(axis=-1)
    assert (jit[paper] == 255).all()


def test_baseline_offset_moves_traces_by_the_drawn_offset():
    t = np.arange(5000) / FS
    sig = np.tile((0.2 * np.sin(2 * np.pi * t)).astype(np.float32), (12, 1))
    ecg = Ecg(sig, FS, {"id": "sine"})
    config = RenderConfig(grid="none", show_labels=False, show_scale_text=False, show_calibration=False)
    plain, lay = render_ecg_with_layout(ecg, config)
    moved = render_ecg(ecg, config, augment=AugmentConfig(baseline_offset_mv=0.5), rng=np.random.default_rng(2))
    p = lay.panel("I")
    col = int(p.box_px[0] + 0.5 * lay.px_per_s)
    rows_plain = np.flatnonzero(plain[:, col].max(axis=-1) < 128)
    rows_moved = np.flatnonzero(moved[:, col].max(axis=-1) < 128)
    rows_plain = rows_plain[rows_plain < p.box_px[3]]
    rows_moved = rows_moved[rows_moved < p.box_px[3]]
    shift_mv = (rows_plain.mean() - rows_moved.mean()) / lay.px_per_mv
    assert 0.01 < abs(shift_mv) <= 0.5 + 1 / lay.px_per_mv
