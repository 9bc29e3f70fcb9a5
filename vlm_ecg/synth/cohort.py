"""Records and cohorts: rhythm, beat placement, projection to 12 leads, noise, labels.

Record ``i`` of a cohort draws everything from ``np.random.SeedSequence(seed, spawn_key=(i,))``, so it is
bit-identical whether generated alone (`generate_record`), in a stream (`iter_cohort`) or in a batch
(`make_cohort`), and cohorts can be generated in parallel shards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from ..ecg import LEADS, Ecg
from ..labels import CULPRITS, Record
from .config import NoiseConfig, SynthConfig
from .morphology import GROUPS, build_template
from .noise import electrode_noise, electrodes_to_independent_leads
from .patient import PatientParams, sample_patient
from .vcg import DOWER, expand_to_twelve_leads, scale_to_leads

_FWAVE_DIRECTION = np.array([0.1, 0.7, -0.7])  # atrial activity: best seen in II and V1


def _beat_onsets(p: PatientParams, rng: np.random.Generator, duration_s: float) -> np.ndarray:
    """QRS onset times (s) covering the record plus one template length on each side."""
    rr0 = 60.0 / p.hr_bpm
    first = -0.9 - rr0 * rng.random()
    k = int(np.ceil((duration_s + 2.0 - first) / (0.5 * rr0))) + 2
    if p.subtype == "afib":
        cv = p.subtype_params["rr_cv"]
        rr = rr0 * np.exp(cv * rng.standard_normal(k) - 0.5 * cv**2)
    else:
        tk = first + rr0 * np.arange(k)
        phase = rng.uniform(0, 2 * np.pi, 2)
        var = np.sin(2 * np.pi * p.resp_hz * tk + phase[0]) + 0.7 * np.sin(2 * np.pi * 0.1 * tk + phase[1])
        var = var + 0.5 * rng.standard_normal(k)
        rr = rr0 + (var - var.mean()) / (var.std() + 1e-12) * p.rr_std_ms / 1000.0
    rr = np.clip(rr, 0.3, 2.5)
    onsets = first + np.concatenate([[0.0], np.cumsum(rr)])
    return onsets[onsets < duration_s + 0.5]


def _fibrillatory_waves(p: PatientParams, rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """(3, n) VCG of AF f-waves: three drifting 4-9 Hz oscillations, `fwave_mv` in the largest lead."""
    f = p.subtype_params["fwave_hz"] * rng.uniform(0.85, 1.15, (3, 1))
    wobble = 1.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4, (3, 1)) * t + rng.uniform(0, 2 * np.pi, (3, 1)))
    wave = (
        rng.uniform(0.5, 1.0, (3, 1)) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, (3, 1)) + wobble)
    ).sum(0)
    wave /= np.abs(wave).max() + 1e-12
    return np.outer(scale_to_leads(_FWAVE_DIRECTION, p.subtype_params["fwave_mv"], LEADS), wave)


def synthesize_record(
    params: PatientParams,
    rng: np.random.Generator,
    *,
    noise: NoiseConfig | float = 1.0,
    fs: float = 500.0,
    duration_s: float = 10.0,
    record_id: str = "synth-example",
    meta: dict | None = None,
) -> Record:
    """Render one patient to a labelled 12-lead record.

    The generator is split into independent streams (rhythm, atrial activity, noise), so changing a
    morphology parameter, the culprit or the subtype leaves the beat times and the noise unchanged: a
    matched counterfactual of the same recording.

    Args:
        params: the patient (see `sample_patient`, or build one by hand).
        rng: generator for beat-to-beat variability and noise.
        noise: a `NoiseConfig`, or a number scaling the default (0 = clean).
        fs: sampling rate in Hz.
        duration_s: record length in s.
        record_id: ``ecg.meta["id"]``.
        meta: extra entries for ``ecg.meta`` (the parameters go to ``meta["synth"]["params"]``).

    Returns:
        A `Record` whose ECG is float32 (12, round(fs * duration_s)) mV.
    """
    noise = NoiseConfig.coerce(noise)
    rng_rhythm, rng_atria, rng_noise = rng.spawn(3)
    n = int(round(fs * duration_s))
    t = np.arange(n) / fs
    template = build_template(params, fs)
    onsets = _beat_onsets(params, rng_rhythm, duration_s)
    k = onsets.size
    scales = 1.0 + 0.02 * rng_rhythm.standard_normal((k, len(GROUPS)))
    scales[:, GROUPS.index("QRS")] += 0.05 * np.sin(2 * np.pi * params.resp_hz * onsets + rng_rhythm.uniform(0, 6.3))
    beats = np.einsum("kg,gcl->kcl", scales, template.groups)  # (K, 4) x (4, 3, L) -> (K, 3, L)

    vcg = np.zeros((3, n))
    length = template.t_s.size
    starts = np.round((onsets + template.t_s[0]) * fs).astype(int)
    for b, s in enumerate(starts):
        lo, hi = max(s, 0), min(s + length, n)
        if hi > lo:
            vcg[:, lo:hi] += beats[b, :, lo - s : hi - s]
    if params.subtype == "afib":
        vcg += _fibrillatory_waves(params, rng_atria, t)

    leads = DOWER @ vcg  # (8, 3) @ (3, n) -> (8, n): I, II, V1-V6
    leads += electrodes_to_independent_leads(electrode_noise(rng_noise, noise, n, fs, params.resp_hz))
    signal = expand_to_twelve_leads(leads)
    record_meta = {"id": record_id, "source": "synth", "notes": [], **(meta or {})}
    record_meta.setdefault("synth", {})["params"] = params.to_dict()
    ecg = Ecg(signal, fs, record_meta)
    return Record(ecg=ecg, labels=params.labels(), confounders=params.confounders())


def record_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of record `index` of the cohort with `seed`."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def generate_record(config: SynthConfig, index: int) -> Record:
    """Record `index` of the cohort described by `config` (independent of every other record)."""
    rng = record_rng(config.seed, index)
    params = sample_patient(rng, config)
    return synthesize_record(
        params,
        rng,
        noise=config.noise,
        fs=config.fs,
        duration_s=config.duration_s,
        record_id=f"{config.id_prefix}-{index:06d}",
        meta={"synth": {"seed": config.seed, "index": index}},
    )


def iter_cohort(
    config: SynthConfig | None = None, *, start: int = 0, stop: int | None = None, **overrides
) -> Iterator[Record]:
    """Yield records ``start .. stop - 1`` (default: all ``config.n``) one at a time, e.g. under a progress bar.

    Args:
        config: the cohort; fields can also be given (or overridden) as keyword arguments.
        start, stop: index range, for shards; ``stop`` defaults to ``config.n``.
    """
    config = dataclasses.replace(config or SynthConfig(), **overrides)
    stop = config.n if stop is None else stop
    if not 0 <= start <= stop:
        raise ValueError(f"need 0 <= start <= stop, got start={start}, stop={stop}")
    for i in range(start, stop):
        yield generate_record(config, i)


def make_cohort(config: SynthConfig | None = None, *, progress: bool = False, **overrides) -> list[Record]:
    """Generate a whole cohort, e.g. ``make_cohort(n=2800, prevalence=0.12, confounding=1.0, noise=1.0, seed=0)``.

    Deterministic: the same configuration gives a bit-identical list of records.

    Args:
        config: the cohort (`SynthConfig`); keyword arguments override its fields.
        progress: show a tqdm progress bar.
    """
    config = dataclasses.replace(config or SynthConfig(), **overrides)
    records = iter_cohort(config)
    if progress:
        from tqdm.auto import tqdm

        records = tqdm(records, total=config.n, desc="synth", unit="rec")
    return list(records)


def make_examples(
    seed: int = 0, *, st_mv: float | None = 0.15, noise: NoiseConfig | float = 0.5, subtype: str = "normal"
) -> dict[str, Record]:
    """One record per culprit ("none", "LAD", "LCx", "RCA") of the SAME patient and recording.

    Only the occlusion differs between the four, which makes them a clean demonstration (and test) of
    what each territory looks like. Made for explainers and the demo.

    Args:
        seed: picks the patient.
        st_mv: planted ST size (mV) of the occlusions; None keeps the sampled one.
        noise: noise of the recording (shared by the four).
        subtype: background subtype of the patient.
    """
    out = {}
    for culprit in CULPRITS:
        params = sample_patient(record_rng(seed, 0), culprit=culprit, subtype=subtype)
        if st_mv is not None and culprit != "none":
            params = dataclasses.replace(params, st_mv=float(st_mv))
        out[culprit] = synthesize_record(
            params, record_rng(seed, 1), noise=noise, record_id=f"synth-example-{seed}-{culprit}"
        )
    return out
