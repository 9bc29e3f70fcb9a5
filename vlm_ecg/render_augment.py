"""Training-time image augmentations for rendered ECGs, in the spirit of ecg-image-kit.

All off by default (every magnitude 0). Each enabled one draws its strength from the `np.random.Generator`
the caller passes, so a seeded generator reproduces an image exactly. Applied by `vlm_ecg.render` in this
order: baseline offset (signal level), grid colour jitter (template level), then on the finished image
rotation, blur, JPEG re-encoding and Gaussian noise. PIL does rotation, blur and JPEG (C code, a few ms).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from .render_raster import PageTemplate


def _help(text: str, default: object) -> object:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class AugmentConfig:
    """Strength limits of each augmentation; 0 (or None) switches it off."""

    rotation_deg: float = _help("max |rotation| in degrees, uniform in [-max, max], about the image centre", 0.0)
    noise_std: float = _help("max std of grey Gaussian pixel noise (0-255 scale), uniform in [0, max]", 0.0)
    blur_sigma_px: float = _help("max Gaussian blur radius in pixels, uniform in [0, max]", 0.0)
    jpeg_quality_min: int | None = _help("re-encode as JPEG with quality uniform in [min, 95]; None = off", None)
    grid_jitter: float = _help("max relative change of each grid colour channel's strength, uniform in +-max", 0.0)
    baseline_offset_mv: float = _help("max |offset| added to each lead, uniform in [-max, max] mV", 0.0)

    def __post_init__(self) -> None:
        for name in ("rotation_deg", "noise_std", "blur_sigma_px", "grid_jitter", "baseline_offset_mv"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.grid_jitter > 1:
            raise ValueError(f"grid_jitter is a fraction in [0, 1], got {self.grid_jitter!r}")
        if self.jpeg_quality_min is not None and not 1 <= self.jpeg_quality_min <= 95:
            raise ValueError(f"jpeg_quality_min must be in 1..95, got {self.jpeg_quality_min!r}")

    @property
    def enabled(self) -> bool:
        return bool(
            self.rotation_deg
            or self.noise_std
            or self.blur_sigma_px
            or self.jpeg_quality_min is not None
            or self.grid_jitter
            or self.baseline_offset_mv
        )


def baseline_offsets(aug: AugmentConfig, n_leads: int, rng: np.random.Generator) -> np.ndarray | None:
    """(n_leads, 1) per-lead offsets in mV, or None when off."""
    if not aug.baseline_offset_mv:
        return None
    return rng.uniform(-aug.baseline_offset_mv, aug.baseline_offset_mv, size=(n_leads, 1)).astype(np.float32)


def jittered_page(tpl: PageTemplate, aug: AugmentConfig, trace_rgb: tuple[int, int, int], rng: np.random.Generator):
    """A fresh copy of the template whose grid colour strength is scaled per channel, ink laid back on top.

    A grid pixel is paper white blended with the grid colour, 255 - a * (255 - g); scaling 255 - value by a
    factor f per channel turns the colour g into 255 - f * (255 - g) with the same coverage a, so lines
    stay where they are and only their colour changes. Paper that is not white shifts slightly too.
    """
    if not aug.grid_jitter:
        return tpl.image.copy()
    f = rng.uniform(1.0 - aug.grid_jitter, 1.0 + aug.grid_jitter, size=3).astype(np.float32)
    lut = np.clip(np.rint(255.0 - (255.0 - np.arange(256, dtype=np.float32))[:, None] * f), 0, 255).astype(np.uint8)
    img = np.array(Image.fromarray(tpl.grid).point(lut.T.reshape(-1).tolist()))  # PIL LUT: R, G, B tables
    flat = img.reshape(-1, 3)
    a = tpl.ink_alpha[:, None]
    flat[tpl.ink_index] = np.rint(flat[tpl.ink_index] * (1.0 - a) + np.asarray(trace_rgb, np.float32) * a).astype(
        np.uint8
    )
    return img


def augment_image(
    img: np.ndarray, aug: AugmentConfig, rng: np.random.Generator, fill_rgb: tuple[int, int, int]
) -> tuple[np.ndarray, float]:
    """Rotation, blur, JPEG and noise on a finished (H, W, 3) uint8 image; returns it and the rotation (deg, CCW)."""
    angle = float(rng.uniform(-aug.rotation_deg, aug.rotation_deg)) if aug.rotation_deg else 0.0
    sigma = float(rng.uniform(0.0, aug.blur_sigma_px)) if aug.blur_sigma_px else 0.0
    quality = int(rng.integers(aug.jpeg_quality_min, 96)) if aug.jpeg_quality_min is not None else None
    noise = float(rng.uniform(0.0, aug.noise_std)) if aug.noise_std else 0.0
    if angle or sigma or quality is not None:
        pil = Image.fromarray(img)
        if angle:
            pil = pil.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=tuple(fill_rgb))
        if sigma:
            pil = pil.filter(ImageFilter.GaussianBlur(radius=sigma))
        if quality is not None:
            buf = io.BytesIO()
            pil.save(buf, format="JPEG", quality=quality)
            buf.seek(0)
            pil = Image.open(buf).convert("RGB")
        img = np.asarray(pil).copy()
    if noise:
        grey = rng.standard_normal(img.shape[:2], dtype=np.float32)
        grey *= noise
        img = np.clip(img.astype(np.int16) + np.rint(grey).astype(np.int16)[..., None], 0, 255).astype(np.uint8)
    return img, angle
