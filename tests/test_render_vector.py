"""Vector export (matplotlib) agrees with the raster path: same page, same panel boxes, traces within a pixel."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from vlm_ecg.ecg import Ecg
from vlm_ecg.render import RenderConfig, compute_layout, render_ecg, save_ecg

FS = 500.0
BARE = dict(grid="none", show_labels=False, show_scale_text=False)


def make_ecg() -> Ecg:
    t = np.arange(5000) / FS
    rng = np.random.default_rng(0)
    beats = np.zeros_like(t)
    for k in np.arange(0.3, 10.0, 0.85):  # narrow "QRS" spikes and broad "T" waves
        beats += 1.2 * np.exp(-(((t - k) / 0.012) ** 2)) + 0.3 * np.exp(-(((t - k - 0.3) / 0.06) ** 2))
    sig = np.stack([(1 - 0.15 * i) * beats + 0.02 * rng.standard_normal(t.size) for i in range(12)])
    return Ecg(sig.astype(np.float32), FS, {"id": "beats"})


def trace_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances (px) from each dark pixel of a to the nearest of b, and from b to a."""
    da, db = a.max(axis=-1) < 128, b.max(axis=-1) < 128
    assert da.sum() > 1000 and db.sum() > 1000
    return ndimage.distance_transform_edt(~db)[da], ndimage.distance_transform_edt(~da)[db]


@pytest.mark.parametrize("size", [None, 1024])
def test_matplotlib_png_matches_the_raster_image(tmp_path, size):
    ecg = make_ecg()
    config = RenderConfig(image_size_px=size, **BARE)
    raster = render_ecg(ecg, config)
    vector = np.asarray(Image.open(save_ecg(ecg, tmp_path / "ecg.png", config)).convert("RGB"))
    assert vector.shape == raster.shape
    d_rv, d_vr = trace_distances(raster, vector)
    # every dark pixel of either image touches (8-neighbourhood) a dark pixel of the other
    assert d_rv.max() <= 1.5 and d_vr.max() <= 1.5
    assert np.mean(d_rv <= 1.0) > 0.99 and np.mean(d_vr <= 1.0) > 0.99
    lay = compute_layout(config)
    dark = vector.max(axis=-1) < 128
    for p in lay.panels:  # each panel's trace lies inside its box in the vector rendering too
        x0, y0, x1, y1 = p.box_px
        inside = dark[int(y0) : int(np.ceil(y1)), int(x0) + 2 : int(x1) - 2]
        assert inside.any(axis=0).mean() > 0.98


def test_svg_and_pdf_are_pages_of_the_right_size_with_the_raster_row_bands(tmp_path):
    ecg = make_ecg()
    config = RenderConfig()
    svg = save_ecg(ecg, tmp_path / "ecg.svg", config).read_text()
    assert 'width="792pt" height="612pt"' in svg  # 11 x 8.5 in
    lay = compute_layout(config)
    pt_per_px = 72.0 / config.dpi
    rects = re.findall(
        r'<clipPath id="[^"]+">\s*<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"', svg
    )
    bands = sorted({(float(y), float(h)) for _, y, _, h in rects if float(h) < 600})
    expected = sorted({(p.box_px[1] * pt_per_px, (p.box_px[3] - p.box_px[1]) * pt_per_px) for p in lay.panels})
    assert np.allclose(bands, expected, atol=1e-3)
    for name in ("I", "aVR", "V6"):
        assert f"<!-- {name} -->" in svg  # matplotlib marks each text element with its string
    pdf = save_ecg(ecg, tmp_path / "ecg.pdf", config).read_bytes()
    assert pdf.startswith(b"%PDF") and re.search(rb"/MediaBox \[\s*0 0 792 612\s*\]", pdf)
    assert save_ecg(ecg, tmp_path / "again.pdf", config).read_bytes() == pdf  # reproducible


def test_save_ecg_refuses_unknown_formats(tmp_path):
    with pytest.raises(ValueError, match="svg"):
        save_ecg(make_ecg(), tmp_path / "ecg.gif")
