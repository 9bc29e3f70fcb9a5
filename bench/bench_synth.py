"""Speed of the synthetic cohort and of the measurer on ONE core, against neurokit2 run in the same process.

    python bench/bench_synth.py            # default 2 800-record cohort (target: < 60 s)
    python bench/bench_synth.py --n 500    # quicker

Threads are limited to one (OMP/MKL/OpenBLAS variables set before numpy loads) and the process is pinned to
one CPU where the OS allows it. Baselines: neurokit2's 12-lead simulator (`ecg_simulate(method="multileads")`,
independent leads, no labels) for generation, and neurokit2's lead-II pipeline (`ecg_peaks` +
`ecg_delineate(method="dwt")`) for measurement; ratios > 1 mean vlm_ecg is faster.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from vlm_ecg.measure import measure  # noqa: E402
from vlm_ecg.synth import SynthConfig, make_cohort  # noqa: E402

TARGET_S = 60.0
TARGET_MEASURE_MS = 10.0


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to CPU {core}"
    return "not pinned (no sched_setaffinity on this OS)"


def _neurokit_baselines(n_sim: int, records: list) -> tuple[float, float] | None:
    try:
        import neurokit2 as nk
    except ImportError:
        return None
    t0 = time.perf_counter()
    for i in range(n_sim):
        nk.ecg_simulate(duration=10, sampling_rate=500, method="multileads", random_state=i)
    sim_s = (time.perf_counter() - t0) / n_sim
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rec in records:
            lead_ii = rec.ecg.lead("II").astype(np.float64)
            _, info = nk.ecg_peaks(lead_ii, sampling_rate=500)
            nk.ecg_delineate(lead_ii, info["ECG_R_Peaks"], sampling_rate=500, method="dwt")
    meas_s = (time.perf_counter() - t0) / len(records)
    return sim_s, meas_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=SynthConfig().n, help="records in the cohort")
    parser.add_argument("--baseline-n", type=int, default=5, help="records for the neurokit2 baselines")
    parser.add_argument("--measure-n", type=int, default=300, help="records measured for the measurer timing")
    args = parser.parse_args()
    print(f"threads: 1 ({_pin_one_core()})")

    make_cohort(n=2, seed=1)  # warm-up: imports and the one-off confounder calibration
    t0 = time.perf_counter()
    cohort = make_cohort(n=args.n, seed=0)
    gen_s = time.perf_counter() - t0
    per_rec = gen_s / args.n
    print(
        f"synth: {args.n} records in {gen_s:.1f} s = {args.n / gen_s:.0f} records/s ({per_rec * 1000:.1f} ms/record)"
    )
    full = per_rec * SynthConfig().n
    verdict = "OK" if full < TARGET_S else "OVER TARGET"
    print(f"synth: default {SynthConfig().n}-record cohort: {full:.1f} s (target < {TARGET_S:.0f} s) {verdict}")

    sample = cohort[: min(args.measure_n, len(cohort))]
    t0 = time.perf_counter()
    for rec in sample:
        measure(rec.ecg)
    meas_s = (time.perf_counter() - t0) / len(sample)
    verdict = "OK" if meas_s * 1000 < TARGET_MEASURE_MS else "OVER TARGET"
    print(
        f"measure: {meas_s * 1000:.1f} ms/record over {len(sample)} records "
        f"(target < {TARGET_MEASURE_MS:.0f} ms) {verdict}"
    )

    base = _neurokit_baselines(args.baseline_n, sample[: args.baseline_n])
    if base is None:
        print("baseline: neurokit2 not installed, no ratio")
        return
    sim_s, nk_meas_s = base
    print(
        f"baseline neurokit2 ecg_simulate(multileads): {sim_s * 1000:.0f} ms/record "
        f"-> synth is {sim_s / per_rec:.1f}x faster"
    )
    print(
        f"baseline neurokit2 ecg_peaks + ecg_delineate(dwt), lead II only: {nk_meas_s * 1000:.0f} ms/record "
        f"-> measure (12 leads) is {nk_meas_s / meas_s:.1f}x faster"
    )


if __name__ == "__main__":
    main()
