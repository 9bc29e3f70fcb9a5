"""Rendered ECG pages (uint8 RGB) -> normalised `pixel_values` for the vision tower.

Resize policy: **letterbox**. The page is scaled, keeping its aspect ratio, until its longer side equals
`image_size`, then centred on a white square (the paper colour), as DeepSeek-OCR pads its global view. Stretching
a 3x4 page to a square would change the time / voltage aspect of every waveform differently on the two axes, and
cropping would cut leads. Images already at `image_size` x `image_size` are only normalised. Resizing is bilinear
with antialiasing (thin traces survive downscaling).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .configuration import VlmEcgConfig, VlmEcgVisionConfig

__all__ = ["VlmEcgImageProcessor"]


class VlmEcgImageProcessor:
    """Turn (H, W, 3) uint8 images into (B, 3, image_size, image_size) float pixel values.

    Args:
        image_size: side of the square model input in pixels.
        image_mean, image_std: per-channel normalisation applied to pixels scaled to [0, 1].
        pad_value: uint8 grey level of the letterbox padding (255: white paper).
    """

    def __init__(
        self,
        image_size: int = 512,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        pad_value: int = 255,
    ):
        if image_size < 1 or len(image_mean) != 3 or len(image_std) != 3 or not 0 <= pad_value <= 255:
            raise ValueError("need image_size >= 1, three means, three stds and pad_value in 0..255")
        self.image_size = int(image_size)
        self.image_mean = tuple(float(m) for m in image_mean)
        self.image_std = tuple(float(s) for s in image_std)
        self.pad_value = int(pad_value)

    @classmethod
    def from_config(cls, config: VlmEcgConfig | VlmEcgVisionConfig) -> VlmEcgImageProcessor:
        """The processor matching a model config (its image size and the tower's normalisation)."""
        vision = config.vision_config if isinstance(config, VlmEcgConfig) else config
        return cls(vision.image_size, vision.image_mean, vision.image_std)

    def to_dict(self) -> dict:
        return {
            "image_size": self.image_size,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "pad_value": self.pad_value,
        }

    def __repr__(self) -> str:
        return f"VlmEcgImageProcessor({self.to_dict()})"

    def letterbox(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """One (H, W, 3) uint8 image -> (3, image_size, image_size) float in [0, 255], letterboxed."""
        pixels = _as_uint8_hwc(image).permute(2, 0, 1).float()  # (H, W, 3) -> (3, H, W)
        height, width = pixels.shape[1:]
        size = self.image_size
        if height == size and width == size:
            return pixels
        scale = size / max(height, width)
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        resized = F.interpolate(
            pixels[None], size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
        )
        canvas = torch.full((3, size, size), float(self.pad_value))
        top, left = (size - new_h) // 2, (size - new_w) // 2
        canvas[:, top : top + new_h, left : left + new_w] = resized[0].clamp(0, 255)
        return canvas

    def __call__(self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
        """Images -> (B, 3, image_size, image_size) normalised float32.

        Args:
            images: one (H, W, 3) uint8 image, a (B, H, W, 3) uint8 batch, or a list of (H, W, 3) uint8 images of
                any sizes.
        """
        if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 3:
            images = [images]
        batch = torch.stack([self.letterbox(image) for image in images])
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1)
        return (batch / 255.0 - mean) / std


def _as_uint8_hwc(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    if tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[2] != 3:
        raise ValueError(
            f"expected an (H, W, 3) uint8 RGB image (as vlm_ecg.render.render_ecg returns), "
            f"got shape {tuple(tensor.shape)} dtype {tensor.dtype}"
        )
    return tensor
