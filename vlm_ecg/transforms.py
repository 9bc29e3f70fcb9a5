"""From data-set rows to model inputs: the torch `Dataset` that renders images in loader workers, and collate.

Rendering happens here, per example and per epoch, because the renderer is fast (a few ms per 512 px page) and
an image cache of a few thousand ECGs costs gigabytes; `render_images` builds such a cache for those who prefer
memory to CPU. Augmentation randomness is keyed on (seed, epoch, index), so it does not depend on which worker
renders an example or in which order: a resumed run sees the same images as an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .render import AugmentConfig, RenderConfig, render_ecg

logger = logging.getLogger(__name__)

# Training-time augmentation, in the spirit of ecg-image-kit: what printing, scanning and photographing do.
DEFAULT_AUGMENT = AugmentConfig(
    rotation_deg=2.0, noise_std=6.0, blur_sigma_px=0.8, grid_jitter=0.3, baseline_offset_mv=0.1
)


def render_config_for(image_size_px: int, layout: str = "3x4+II") -> RenderConfig:
    """The rendering used for model inputs: a letter page letterboxed into an `image_size_px` square."""
    return RenderConfig(layout=layout, image_size_px=int(image_size_px))


def render_images(signals: Sequence[np.ndarray], config: RenderConfig, progress: bool = True) -> np.ndarray:
    """Render every (12, n) signal at 500 Hz once: an (N, H, W, 3) uint8 cache for `EcgTorchDataset`."""
    from tqdm.auto import tqdm

    first = render_ecg(np.asarray(signals[0]), config, fs_hz=500.0)
    cache = np.empty((len(signals), *first.shape), dtype=np.uint8)
    cache[0] = first
    for i in tqdm(range(1, len(signals)), desc="render cache", unit="img", disable=not progress):
        cache[i] = render_ecg(np.asarray(signals[i]), config, fs_hz=500.0)
    return cache


class EcgTorchDataset(Dataset):
    """A split of a vlm_ecg data set as model inputs.

    Each item is a dict of tensors: ``signal`` (12, 5000) float mV, ``pixel_values`` (3, S, S) float (when an
    image processor is given), ``strata`` long, ``triage_labels`` float (-1 unknown), ``culprit_labels`` long
    (-100 unknown), ``stenosis_labels`` (3,) float (NaN unknown) and ``index`` (the row).

    Args:
        dataset: a `datasets.Dataset` with the vlm_ecg columns.
        strata: (N,) stratum id per row (`vlm_ecg.causal.strata_from_columns`).
        image_processor: turns rendered uint8 pages into normalised pixel values; None skips images
            (signal-only models).
        render_config: how to draw the page (see `render_config_for`).
        augment: image augmentation for training, None for evaluation.
        seed: augmentation seed.
        image_cache: optional (N, H, W, 3) uint8 pre-rendered images (from `render_images`); augmentation is
            then skipped, since the page is already drawn.
    """

    def __init__(
        self,
        dataset,
        strata: np.ndarray,
        image_processor=None,
        render_config: RenderConfig | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        image_cache: np.ndarray | None = None,
    ):
        if len(strata) != len(dataset):
            raise ValueError(f"{len(strata)} strata for {len(dataset)} rows")
        if image_cache is not None and len(image_cache) != len(dataset):
            raise ValueError(f"image cache has {len(image_cache)} images for {len(dataset)} rows")
        self.dataset = dataset.with_format("numpy", columns=["signal", "triage", "culprit", "stenosis"])
        self.strata = np.asarray(strata, dtype=np.int64)
        self.image_processor = image_processor
        self.render_config = render_config
        self.augment = augment if augment is not None and augment.enabled and image_cache is None else None
        self.seed = int(seed)
        self.image_cache = image_cache
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw; workers are re-created each epoch, so they see the new value."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def image(self, index: int, signal: np.ndarray) -> np.ndarray:
        """The (H, W, 3) uint8 page of row `index` (from the cache, or rendered now)."""
        if self.image_cache is not None:
            return self.image_cache[index]
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.augment is not None else None
        return render_ecg(signal, self.render_config, fs_hz=500.0, augment=self.augment, rng=rng)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.dataset[int(index)]
        signal = np.asarray(row["signal"], dtype=np.float32)
        item = {
            "index": torch.tensor(int(index)),
            "signal": torch.from_numpy(signal),
            "strata": torch.tensor(self.strata[index]),
            "triage_labels": torch.tensor(float(row["triage"])),
            "culprit_labels": torch.tensor(int(row["culprit"])),
            "stenosis_labels": torch.as_tensor(np.asarray(row["stenosis"], dtype=np.float32)),
        }
        if self.image_processor is not None:
            item["pixel_values"] = self.image_processor(self.image(int(index), signal))[0]
        return item


def collate_batch(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack a list of `EcgTorchDataset` items into a batch dict (the model's keyword arguments + ``index``)."""
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


MODEL_INPUTS: tuple[str, ...] = (
    "pixel_values",
    "signal",
    "strata",
    "triage_labels",
    "culprit_labels",
    "stenosis_labels",
)


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device | str, with_labels: bool = True) -> dict:
    """The model's keyword arguments from a batch, on `device` (``index`` and, optionally, labels dropped)."""
    keys = MODEL_INPUTS if with_labels else MODEL_INPUTS[:3]
    return {k: batch[k].to(device) for k in keys if k in batch}
