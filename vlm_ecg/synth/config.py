"""Configuration of the synthetic cohort: what to generate (`SynthConfig`) and how noisy (`NoiseConfig`).

Every field carries its help text in ``metadata["help"]`` (shown by argument parsers such as
``HfArgumentParser``) and is checked in ``__post_init__`` so that a bad value fails at construction, not
halfway through a 2 800-record run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..labels import VESSELS

SUBTYPES: tuple[str, ...] = ("normal", "nonspecific_t", "demand_st", "lvh_strain", "rbbb", "lbbb", "afib")
"""Background ECG subtypes. Every patient, occluded or not, has one; the occlusion pattern is added on top."""

DEFAULT_SUBTYPE_MIX: dict[str, float] = {
    "normal": 0.46,
    "nonspecific_t": 0.10,
    "demand_st": 0.10,
    "lvh_strain": 0.08,
    "rbbb": 0.08,
    "lbbb": 0.06,
    "afib": 0.12,
}
DEFAULT_CULPRIT_MIX: dict[str, float] = {"LAD": 0.45, "LCx": 0.20, "RCA": 0.35}


def _check_mix(name: str, mix: dict[str, float], allowed: tuple[str, ...]) -> dict[str, float]:
    unknown = [k for k in mix if k not in allowed]
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
    if any(not v >= 0 for v in mix.values()):
        raise ValueError(f"{name}: weights must be >= 0, got {mix}")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError(f"{name}: weights sum to {total}; at least one must be positive")
    return {k: float(mix.get(k, 0.0)) / total for k in allowed}


@dataclass(frozen=True)
class NoiseConfig:
    """Recording noise, added per electrode (RA, LA, LL, V1-V6) so the limb-lead identities survive.

    Amplitudes are typical per-electrode values in mV at ``scale=1``; each record draws its own amplitudes
    around them (a log-normal record factor with spread `record_spread`, then a uniform factor per electrode),
    so a cohort mixes clean and noisy records as a real one does.
    """

    scale: float = field(default=1.0, metadata={"help": "Global multiplier of every noise source; 0 = clean."})
    baseline_mv: float = field(
        default=0.1, metadata={"help": "Respiratory baseline wander (0.15-0.3 Hz sinusoid), peak mV per electrode."}
    )
    drift_mv: float = field(default=0.08, metadata={"help": "Slow random drift (< 0.5 Hz), peak mV per electrode."})
    powerline_mv: float = field(default=0.015, metadata={"help": "Mains interference, peak mV per electrode."})
    powerline_hz: float = field(
        default=0.0, metadata={"help": "Mains frequency in Hz (50 or 60); 0 = drawn per record (half each)."}
    )
    harmonic_ratio: float = field(
        default=0.3, metadata={"help": "Amplitude of the 3rd mains harmonic relative to the fundamental."}
    )
    emg_mv: float = field(default=0.012, metadata={"help": "Muscle noise (20-150 Hz band), RMS mV per electrode."})
    motion_probability: float = field(
        default=0.15, metadata={"help": "Probability that a record has one electrode-motion artefact."}
    )
    motion_mv: float = field(default=0.4, metadata={"help": "Peak amplitude of an electrode-motion artefact, mV."})
    record_spread: float = field(
        default=0.5, metadata={"help": "Sigma of the log-normal per-record noise factor (0 = every record alike)."}
    )

    def __post_init__(self) -> None:
        for name in ("scale", "baseline_mv", "drift_mv", "powerline_mv", "harmonic_ratio", "emg_mv", "motion_mv"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"NoiseConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.powerline_hz not in (0.0, 50.0, 60.0):
            raise ValueError(f"NoiseConfig.powerline_hz must be 0 (random), 50 or 60, got {self.powerline_hz!r}")
        if not 0.0 <= self.motion_probability <= 1.0:
            raise ValueError(f"NoiseConfig.motion_probability must lie in [0, 1], got {self.motion_probability!r}")
        if not 0.0 <= self.record_spread <= 2.0:
            raise ValueError(f"NoiseConfig.record_spread must lie in [0, 2], got {self.record_spread!r}")

    @classmethod
    def coerce(cls, noise: NoiseConfig | float | int) -> NoiseConfig:
        """Accept a `NoiseConfig` or a bare number (the `scale` of the default configuration)."""
        if isinstance(noise, NoiseConfig):
            return noise
        if isinstance(noise, (int, float)) and not isinstance(noise, bool):
            return cls(scale=float(noise))
        raise TypeError(f"noise must be a NoiseConfig or a number (scale), got {type(noise).__name__}")


@dataclass(frozen=True)
class SynthConfig:
    """What cohort to generate. Record ``i`` depends only on (`seed`, ``i``) and this configuration."""

    n: int = field(default=2800, metadata={"help": "Number of records."})
    prevalence: float = field(
        default=0.12, metadata={"help": "Expected fraction of occlusions (triage = 1), kept under any confounding."}
    )
    confounding: float = field(
        default=1.0,
        metadata={
            "help": "Strength of the confounders' (age, male sex, hypertension, diabetes, prior MI) effect on the "
            "occlusion probability: 0 none, 1 realistic, negative reverses the association (shortcut tests)."
        },
    )
    noise: NoiseConfig | float = field(
        default=1.0, metadata={"help": "A NoiseConfig, or a number that scales the default one (0 = clean)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed; record i draws from SeedSequence(seed, spawn_key=(i,))."})
    fs: float = field(default=500.0, metadata={"help": "Sampling rate in Hz."})
    duration_s: float = field(default=10.0, metadata={"help": "Record length in seconds."})
    culprit_mix: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_CULPRIT_MIX),
        metadata={"help": "Relative frequency of each culprit vessel among occlusions (LAD, LCx, RCA)."},
    )
    subtype_mix: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_SUBTYPE_MIX),
        metadata={
            "help": "Population frequency of each background subtype (for positives and negatives alike); "
            "confounders tilt it per patient (age -> AF and BBB, hypertension -> LVH) around this mean."
        },
    )
    st_mv_range: tuple[float, float] = field(
        default=(0.05, 0.2),
        metadata={"help": "Planted ST deviation at J+60 ms in the most affected territory lead, mV (min, max)."},
    )
    id_prefix: str = field(default="synth", metadata={"help": "Record ids are f'{id_prefix}-{i:06d}'."})

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 0:
            raise ValueError(f"SynthConfig.n must be a non-negative int, got {self.n!r}")
        if not 0.0 <= self.prevalence <= 1.0:
            raise ValueError(f"SynthConfig.prevalence must lie in [0, 1], got {self.prevalence!r}")
        if not -5.0 <= self.confounding <= 5.0:
            raise ValueError(f"SynthConfig.confounding must lie in [-5, 5], got {self.confounding!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"SynthConfig.seed must be a non-negative int, got {self.seed!r}")
        if not 100.0 <= self.fs <= 10_000.0:
            raise ValueError(f"SynthConfig.fs must lie in [100, 10000] Hz, got {self.fs!r}")
        if not 2.0 <= self.duration_s <= 600.0:
            raise ValueError(f"SynthConfig.duration_s must lie in [2, 600] s, got {self.duration_s!r}")
        lo, hi = self.st_mv_range
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"SynthConfig.st_mv_range must satisfy 0 < min <= max <= 1 mV, got {self.st_mv_range}")
        object.__setattr__(self, "noise", NoiseConfig.coerce(self.noise))
        object.__setattr__(self, "culprit_mix", _check_mix("culprit_mix", self.culprit_mix, VESSELS))
        object.__setattr__(self, "subtype_mix", _check_mix("subtype_mix", self.subtype_mix, SUBTYPES))
        object.__setattr__(self, "st_mv_range", (float(lo), float(hi)))
