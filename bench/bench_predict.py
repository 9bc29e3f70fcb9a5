"""End-to-end prediction latency of the tiny preset on CPU: read -> render -> both branches -> heads.

Run it like this (two CPU cores):

    .venv/bin/python bench/bench_predict.py                       # a 500 Hz record of ../shared/data, else synthetic
    .venv/bin/python bench/bench_predict.py --ecg rec.hea --reps 50 --batch 32

One ECG at batch 1: the file is read and standardised (500 Hz, 10 s), rendered straight at the model's input size
(512 x 512, letterboxed), normalised, and run through the random-init tiny model (weights do not change the time);
the median over `--reps` runs is compared with the 150 ms target, stage by stage. Then `--batch` ECGs are read,
rendered and predicted in one forward for the throughput.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vlm_ecg.io import read_ecg, write_ecg
from vlm_ecg.modeling import VlmEcgConfig, VlmEcgImageProcessor, VlmEcgModel
from vlm_ecg.render import RenderConfig, render_ecg
from vlm_ecg.synth import SynthConfig, generate_record

TARGET_MS = 150.0
SHARED_RECORD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ludb" / "data" / "10.hea"


def default_ecg(workdir: Path) -> Path:
    """A real 500 Hz record from the shared test data when present, else a synthetic one written as .npz."""
    if SHARED_RECORD.is_file():
        return SHARED_RECORD
    path = workdir / "synthetic.npz"
    write_ecg(generate_record(SynthConfig(n=1, seed=0), 0).ecg, path)
    return path


class Pipeline:
    """The stages of one prediction, each callable on its own for timing."""

    def __init__(self, model: VlmEcgModel):
        self.model = model
        self.processor = VlmEcgImageProcessor.from_config(model.config)
        self.render_config = RenderConfig(image_size_px=self.processor.image_size)

    def read(self, path: Path):
        return read_ecg(path).standardize()

    def render(self, ecg) -> np.ndarray:
        return render_ecg(ecg, self.render_config)

    def prepare(self, ecgs: list, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        signal = torch.from_numpy(np.stack([ecg.signal for ecg in ecgs]))
        return self.processor(images), signal

    def predict(self, pixel_values: torch.Tensor, signal: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            out = self.model(pixel_values=pixel_values, signal=signal)
        return {
            "triage": torch.sigmoid(out.triage_logits),
            "culprit": torch.softmax(out.culprit_logits, dim=-1),
            "stenosis": out.stenosis,
        }

    def run(self, paths: list[Path]) -> dict[str, torch.Tensor]:
        ecgs = [self.read(p) for p in paths]
        return self.predict(*self.prepare(ecgs, [self.render(e) for e in ecgs]))


def time_ms(fn: Callable[[], object], reps: int) -> tuple[float, float]:
    """(median, min) wall time in ms over `reps` calls after one warm-up; the min shows the unloaded cost when
    other processes share the cores."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ecg", type=Path, help="ECG file (WFDB .hea, .csv, .npz); default: see module docstring")
    parser.add_argument("--reps", type=int, default=30, help="timed single-ECG runs")
    parser.add_argument("--batch", type=int, default=32, help="batch size of the throughput run")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as workdir:
        path = args.ecg or default_ecg(Path(workdir))
        pipe = Pipeline(VlmEcgModel(VlmEcgConfig()).eval())
        ecg = pipe.read(path)
        image = pipe.render(ecg)
        inputs = pipe.prepare([ecg], [image])
        stages = {
            "read + standardise": time_ms(lambda: pipe.read(path), args.reps),
            "render 512 px": time_ms(lambda: pipe.render(ecg), args.reps),
            "normalise + stack": time_ms(lambda: pipe.prepare([ecg], [image]), args.reps),
            "model (both branches + heads)": time_ms(lambda: pipe.predict(*inputs), args.reps),
        }
        total, total_min = time_ms(lambda: pipe.run([path]), args.reps)
        batch_ms, _ = time_ms(lambda: pipe.run([path] * args.batch), max(3, args.reps // 10))

    print(f"ECG: {path}  ({torch.get_num_threads()} threads, {args.reps} runs: median / min)")
    for name, (median, fastest) in stages.items():
        print(f"  {name:<32}{median:>8.1f} / {fastest:>6.1f} ms  ({100 * median / total:4.1f} % of end-to-end)")
    verdict = "meets" if total <= TARGET_MS else "MISSES"
    print(
        f"end-to-end, batch 1: {total:.1f} ms median, {total_min:.1f} ms min ({verdict} the {TARGET_MS:.0f} ms target)"
    )
    print(f"batch {args.batch}: {batch_ms / 1e3:.2f} s per batch (median), {1e3 * args.batch / batch_ms:.1f} ECGs/s")


if __name__ == "__main__":
    main()
