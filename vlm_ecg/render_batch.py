"""Render many ECG files to images in parallel worker processes (the `vlm-ecg render` / `python render` command).

Inputs are files or folders; a folder contributes every ECG file below it (WFDB headers, .npz, .csv).
Each file is read with `vlm_ecg.io.read_ecg` and drawn at its own sampling rate and length (pass
`standardize=True` to resample to 500 Hz / 10 s first). A file that fails is recorded with its error and
the batch goes on; the caller reports the failures at the end.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .errors import EcgError
from .render_layout import RenderConfig

logger = logging.getLogger(__name__)

IMAGE_FORMATS = ("png", "jpg", "npy")
FOLDER_SUFFIXES = (".hea", ".npz", ".csv")  # what a folder contributes (a WFDB record once, by its header)


@dataclass
class BatchResult:
    """Outcome of a batch: (input, output) pairs written, and (input, error message) pairs that failed."""

    rendered: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def collect_inputs(paths: list[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """Expand files and folders into (input file, output stem relative to the output folder).

    A file given directly keeps its stem; files found in a folder keep their path below that folder, so
    records with the same name in different sub-folders do not collide. Two inputs that still map to the
    same stem (``x.hea`` and ``x.csv``) get their input suffix appended (``x_hea``, ``x_csv``). Paths that
    do not exist are kept: they fail when read, with a clear error.
    """
    pairs: list[tuple[Path, Path]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in FOLDER_SUFFIXES)
            pairs.extend((f, f.relative_to(p).with_suffix("")) for f in found)
        else:
            stem = p.with_suffix("") if p.suffix.lower() in (".hea", ".dat", ".mat", ".npz", ".csv") else p
            pairs.append((p, Path(stem.name)))
    counts = Counter(stem for _, stem in pairs)
    out, seen = [], set()
    for f, stem in pairs:
        if counts[stem] > 1:
            stem = stem.with_name(f"{stem.name}_{f.suffix.lstrip('.').lower() or 'record'}")
        if (f, stem) not in seen:
            seen.add((f, stem))
            out.append((f, stem))
    return out


def write_image(img: np.ndarray, path: Path, fmt: str) -> Path:
    """Encode (H, W, 3) uint8 `img` as png / jpg (quality 95) / npy at `path` + suffix; returns the file."""
    path = path.with_name(f"{path.name}.{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        np.save(path, img, allow_pickle=False)
    elif fmt == "jpg":
        Image.fromarray(img).save(path, format="JPEG", quality=95)
    elif fmt == "png":
        Image.fromarray(img).save(path, format="PNG", compress_level=3)
    else:
        raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {fmt!r}")
    return path


def _render_one(job: tuple[Path, Path, RenderConfig, str, bool, bool]) -> tuple[Path, Path | None, str | None]:
    """Worker: read, render and write one file; errors come back as text instead of stopping the batch."""
    from .io import read_ecg
    from .render import render_ecg_with_layout

    src, out_stem, config, fmt, standardize, with_json = job
    try:
        ecg = read_ecg(src)
        if standardize:
            ecg = ecg.standardize()
        img, layout = render_ecg_with_layout(ecg, config)
        written = write_image(img, out_stem, fmt)
        if with_json:
            meta = {"source": str(src), "fs_hz": ecg.fs, "duration_s": ecg.duration_s, "layout": layout.to_dict()}
            out_stem.with_name(f"{out_stem.name}.json").write_text(json.dumps(meta, indent=1))
        return src, written, None
    except EcgError as exc:
        return src, None, str(exc)
    except Exception as exc:  # an unexpected failure of one file must not lose the rest of the batch
        logger.debug("rendering %s failed", src, exc_info=True)
        return src, None, f"{src}: {type(exc).__name__}: {exc}"


def render_files(
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    config: RenderConfig | None = None,
    *,
    image_format: str = "png",
    workers: int | None = None,
    standardize: bool = False,
    write_layout_json: bool = False,
    progress: bool = True,
) -> BatchResult:
    """Render every ECG file in `inputs` (files or folders) into `out_dir`.

    Args:
        inputs: ECG files (anything `read_ecg` reads) and folders to search.
        out_dir: output folder; created if needed.
        config: rendering settings (default `RenderConfig()`: letter page, 200 dpi, 3x4+II).
        image_format: "png", "jpg" or "npy" (the raw uint8 array, fastest to write and to load).
        workers: worker processes (default: all cores); 1 renders in this process.
        standardize: resample to 500 Hz and fit to 10 s before drawing.
        write_layout_json: also write ``<name>.json`` with the panel boxes and scales.
        progress: show a tqdm progress bar.

    Returns:
        A `BatchResult`; the batch never stops on a bad file.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    config = config or RenderConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (f, out / stem, config, image_format, standardize, write_layout_json) for f, stem in collect_inputs(inputs)
    ]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    result = BatchResult()
    bar = tqdm(total=len(jobs), unit="ecg", desc="render", disable=not progress)
    if workers == 1:
        outcomes = map(_render_one, jobs)
        pool = None
    else:
        # forkserver: workers fork from a clean single-threaded server, never from a caller that may hold
        # threads (torch, tqdm, a data loader) whose locks a plain fork would copy mid-use
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method))
        outcomes = pool.map(_render_one, jobs, chunksize=max(1, min(32, len(jobs) // (4 * workers))))
    try:
        for src, written, error in outcomes:
            if error is None:
                result.rendered.append((src, written))
            else:
                result.failed.append((src, error))
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    logger.debug("rendered %d of %d files into %s", len(result.rendered), len(jobs), out)
    return result
