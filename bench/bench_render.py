"""Rendering speed on one core: vlm_ecg's numpy raster path against matplotlib drawing the same page.

    python bench/bench_render.py            # about a minute
    python bench/bench_render.py --quick    # fewer repeats

Both renderers draw the same layout (3x4 + II rhythm strip, red grid, calibration pulses, labels) of the
same 500 Hz, 10 s record at 512 x 512, 1024 x 1024 and a 2200 x 1700 letter page (200 dpi), into an RGB
array (no file encoding: training keeps arrays). The process is pinned to one CPU with BLAS/OpenMP threads
set to 1. Baselines, run side by side in this process:

* matplotlib, figure per image: `vlm_ecg.render_vector.figure_ecg` (grid and traces as `LineCollection`s,
  no pyplot, no `plot` call per line) drawn with Agg, what a straightforward renderer does per example;
* matplotlib, figure reused: the same figure built once, only the trace segments replaced before each
  draw, the best case for matplotlib.

Targets (issue 3): >= 10x faster than matplotlib figure-per-image; >= 150 images/s at 1024 x 1024; a page in
<= 24 ms.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from vlm_ecg.ecg import LEADS, Ecg  # noqa: E402
from vlm_ecg.render import AugmentConfig, RenderConfig, compute_layout, render_ecg  # noqa: E402
from vlm_ecg.render_raster import panel_polyline  # noqa: E402
from vlm_ecg.render_vector import figure_ecg, figure_to_array  # noqa: E402


def synthetic_ecg(seed: int) -> Ecg:
    """A 500 Hz, 10 s 12-lead record with beats (narrow QRS, broad T), wander and noise."""
    rng = np.random.default_rng(seed)
    fs, t = 500.0, np.arange(5000) / 500.0
    rr = rng.uniform(0.6, 1.1)
    sig = np.empty((12, t.size), dtype=np.float32)
    for i in range(12):
        amp, t_amp = rng.uniform(-1.5, 2.0), rng.uniform(-0.3, 0.5)
        beats = sum(
            amp * np.exp(-(((t - k) / 0.015) ** 2)) + t_amp * np.exp(-(((t - k - 0.28) / 0.06) ** 2))
            for k in np.arange(rng.uniform(0, rr), 10.0, rr)
        )
        sig[i] = beats + 0.1 * np.sin(2 * np.pi * 0.2 * t + i) + 0.02 * rng.standard_normal(t.size)
    return Ecg(sig, fs, {"id": f"bench-{seed}"})


def time_per_call(fn: Callable[[int], object], n: int, rounds: int = 3) -> float:
    """Seconds per call: the best of `rounds` medians of `n` calls (each call gets a different record index)."""
    fn(0)  # warm-up: caches, imports
    best = float("inf")
    for _ in range(rounds):
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - t0)
        best = min(best, statistics.median(times))
    return best


def reused_figure_renderer(config: RenderConfig, ecgs: list[Ecg]) -> Callable[[int], np.ndarray]:
    """Matplotlib at its best: one figure, only the traces' segments replaced before each draw."""
    layout = compute_layout(config)
    fig = figure_ecg(ecgs[0], config, layout)
    ax = fig.axes[0]
    rows = {c.get_gid(): c for c in ax.collections if (c.get_gid() or "").startswith("traces-row-")}

    def render(i: int) -> np.ndarray:
        ecg = ecgs[i % len(ecgs)]
        segments: dict[int, list[np.ndarray]] = {}
        for p in layout.panels:
            xs, ys = panel_polyline(ecg.signal[LEADS.index(p.lead)], ecg.fs, p, layout)
            segments.setdefault(p.row, []).append(np.column_stack([xs, ys]))
        for r, segs in segments.items():
            rows[f"traces-row-{r}"].set_segments(segs)
        return figure_to_array(fig)

    return render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (rougher numbers)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    ecgs = [synthetic_ecg(s) for s in range(8)]
    n_fast, n_mpl = (30, 3) if args.quick else (200, 10)
    cases = [
        ("512 x 512", RenderConfig(image_size_px=512)),
        ("1024 x 1024", RenderConfig(image_size_px=1024)),
        ("2200 x 1700 page", RenderConfig(page="letter", dpi=200)),
    ]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"rendering speed, 3x4+II, 500 Hz x 10 s, {cpus} CPU, numpy {np.__version__}")
    header = (
        f"{'size':<18}{'vlm_ecg ms':>11}{'img/s':>9}{'mpl/fig ms':>12}{'ratio':>8}{'mpl reuse ms':>14}{'ratio':>8}"
    )
    print(header)
    print("-" * len(header))
    results = {}
    for name, config in cases:
        ours = time_per_call(lambda i, c=config: render_ecg(ecgs[i % 8], c), n_fast)
        per_fig = time_per_call(lambda i, c=config: figure_to_array(figure_ecg(ecgs[i % 8], c)), n_mpl)
        reused = time_per_call(reused_figure_renderer(config, ecgs), n_mpl)
        results[name] = (ours, per_fig, reused)
        print(
            f"{name:<18}{ours * 1e3:>11.2f}{1 / ours:>9.0f}{per_fig * 1e3:>12.1f}{per_fig / ours:>7.0f}x"
            f"{reused * 1e3:>14.1f}{reused / ours:>7.0f}x"
        )
    aug = AugmentConfig(rotation_deg=2, noise_std=4, blur_sigma_px=0.7, grid_jitter=0.2, baseline_offset_mv=0.1)
    cfg = RenderConfig(image_size_px=1024)
    rng = np.random.default_rng(0)
    with_aug = time_per_call(lambda i: render_ecg(ecgs[i % 8], cfg, augment=aug, rng=rng), n_fast // 2)
    print(
        f"{'1024 + augment':<18}{with_aug * 1e3:>11.2f}{1 / with_aug:>9.0f}  (rotation, blur, noise, jitter, offset)"
    )
    ours_1024, fig_1024, _ = results["1024 x 1024"]
    page = results["2200 x 1700 page"][0]
    worst_ratio = min(per_fig / ours for ours, per_fig, _ in results.values())
    print()
    verdict = "PASS" if worst_ratio >= 10 else "FAIL"
    print(f"target >= 10x matplotlib (figure per image): worst {worst_ratio:.0f}x  {verdict}")
    print(
        f"target >= 150 img/s at 1024 x 1024: {1 / ours_1024:.0f} img/s  {'PASS' if 1 / ours_1024 >= 150 else 'FAIL'}"
    )
    print(f"target page <= 24 ms: {page * 1e3:.1f} ms  {'PASS' if page <= 0.024 else 'FAIL'}")


if __name__ == "__main__":
    main()
