"""Global-local vision encoder (16x compressor) vs the same towers without the compressor: tokens, FLOPs, CPU time.

Run it like this (two CPU cores, random-init weights, which is all timing needs):

    .venv/bin/python bench/bench_encoder.py                     # tiny timed, deepencoder FLOPs only
    .venv/bin/python bench/bench_encoder.py --time-deepencoder  # + one timed deepencoder run (minutes on CPU)

The baseline feeds the global stage *all* local patches: SAM neck features (B, C, S/16, S/16) -> a 1x1 linear to
the global width -> the same CLIP stage over (S/16)^2 tokens, i.e. the encoder without DeepSeek-OCR's two stride-2
convolutions. FLOPs are counted by `torch.utils.flop_counter` on the meta device (shapes only, so the 400 M
parameter deepencoder costs nothing to count); times are medians of `--reps` forwards after one warm-up
(deepencoder: one cold forward), batch 1, under `torch.no_grad()`. Targets: 16x fewer global tokens; global stage
>= 10x faster at 1024 px; whole deepencoder-shaped encoder >= 3x fewer FLOPs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vlm_ecg.modeling import VlmEcgConfig
from vlm_ecg.modeling.vision import GlobalLocalVisionTower


class Encoders:
    """The global-local encoder and its no-compressor baseline, sharing one tower's local and global stages."""

    def __init__(self, preset: str, image_px: int, device: str):
        config = VlmEcgConfig(vision_config={"preset": preset, "image_size": image_px}).vision_config
        with torch.device(device):
            self.tower = GlobalLocalVisionTower(config).eval()
            self.widen = nn.Linear(config.local_config.output_channels, config.global_config.hidden_size)
        self.width = config.global_config.hidden_size
        self.image_px = image_px
        self.device = device

    def pixels(self) -> torch.Tensor:
        return torch.randn(1, 3, self.image_px, self.image_px, device=self.device)

    def global_local(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.tower(pixels).last_hidden_state

    def all_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        local = self.tower.encode_local(pixels)  # (B, C, S/16, S/16)
        tokens = self.widen(local.flatten(2).transpose(1, 2))  # (B, (S/16)^2, D)
        return self.tower.encode_global(tokens, (local.shape[2], local.shape[3]))

    def global_tokens(self, compressed: bool) -> int:
        grid = self.image_px // (64 if compressed else 16)
        return grid * grid

    def global_stage(self, compressed: bool) -> Callable[[], torch.Tensor]:
        grid = self.image_px // (64 if compressed else 16)
        tokens = torch.randn(1, grid * grid, self.width, device=self.device)
        return lambda: self.tower.encode_global(tokens, (grid, grid))


def count_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn()
    return counter.get_total_flops()


def median_seconds(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median wall time of each function over `reps` interleaved rounds (after a warm-up round when reps > 1).

    Interleaving spreads any load from other processes over all variants instead of biasing one.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.no_grad():
        if reps > 1:
            for fn in fns.values():
                fn()
        for _ in range(reps):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_cell(preset: str, image_px: int, reps: int, timed: bool) -> None:
    """Print the two variants' rows and their ratios for one preset and resolution."""
    meta = Encoders(preset, image_px, "meta")
    flops = {
        "global-local": (count_flops(lambda: meta.global_local(meta.pixels())), count_flops(meta.global_stage(True))),
        "all patches": (count_flops(lambda: meta.all_patches(meta.pixels())), count_flops(meta.global_stage(False))),
    }
    times = {}
    if timed:
        cpu = Encoders(preset, image_px, "cpu")
        pixels = cpu.pixels()
        fns = {
            "gl_enc": lambda: cpu.global_local(pixels),
            "gl_glob": cpu.global_stage(True),
            "ap_enc": lambda: cpu.all_patches(pixels),
            "ap_glob": cpu.global_stage(False),
        }
        if preset == "deepencoder" and image_px == 1024:
            del fns["ap_enc"]  # minutes per forward on CPU
        seconds = median_seconds(fns, reps)
        times["global-local"] = (seconds["gl_enc"], seconds["gl_glob"])
        times["all patches"] = (seconds.get("ap_enc", float("nan")), seconds["ap_glob"])
    for variant, (enc_flops, glob_flops) in flops.items():
        enc_s, glob_s = times.get(variant, (float("nan"), float("nan")))
        print(
            f"{preset:<12}{image_px:>6}{variant:>14}{meta.global_tokens(variant == 'global-local'):>11}"
            f"{enc_flops / 1e9:>11.1f}{glob_flops / 1e9:>11.2f}{1e3 * enc_s:>10.1f}{1e3 * glob_s:>10.1f}"
        )
    (gl_enc, gl_glob), (ap_enc, ap_glob) = flops["global-local"], flops["all patches"]
    token_ratio = meta.global_tokens(False) / meta.global_tokens(True)
    line = (
        f"  ratios {preset} {image_px} px: global tokens {token_ratio:.0f}x fewer; encoder FLOPs "
        f"{ap_enc / gl_enc:.2f}x fewer; global-stage FLOPs {ap_glob / gl_glob:.1f}x fewer"
    )
    if times:
        (gl_enc_s, gl_glob_s), (ap_enc_s, ap_glob_s) = times["global-local"], times["all patches"]
        line += f"; global stage {ap_glob_s / gl_glob_s:.1f}x faster"
        if ap_enc_s == ap_enc_s:  # not NaN
            line += f"; encoder {ap_enc_s / gl_enc_s:.2f}x faster"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement (tiny)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--time-deepencoder",
        action="store_true",
        help="also time the deepencoder shape once per cell (global-local encoder and both global stages; "
        "the no-compressor encoder at 1024 px is skipped: minutes per forward on CPU)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    header = (
        f"{'shape':<12}{'px':>6}{'variant':>14}{'global tok':>11}{'enc GFLOP':>11}{'glob GFLOP':>11}"
        f"{'enc ms':>10}{'glob ms':>10}"
    )
    print(header)
    print("-" * len(header))
    for preset in ("tiny", "deepencoder"):
        for image_px in (512, 1024):
            timed = preset == "tiny" or args.time_deepencoder
            bench_cell(preset, image_px, reps=args.reps if preset == "tiny" else 1, timed=timed)
    if not args.time_deepencoder:
        print(
            "deepencoder: FLOPs only (SAM ViT-B + CLIP ViT-L take ~19 s per 1024 px forward on this CPU); "
            "pass --time-deepencoder to time it"
        )


if __name__ == "__main__":
    main()
