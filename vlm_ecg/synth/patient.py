"""Who the synthetic patient is: confounders, labels and physiological parameters (`PatientParams`).

`sample_patient` draws one patient. The causal story it encodes (documented numbers, adult resting ECG):

* Confounders: age ~ N(62, 12) y clipped to [25, 95]; 60 % men; hypertension, diabetes and prior MI more
  likely with age (and prior MI with male sex and diabetes): about 45 %, 25 % and 13 % overall.
* Occlusion (triage = 1): logit p = b0 + confounding * risk, risk = 0.45 per decade over 62 + 0.35 male
  + 0.45 hypertension + 0.6 diabetes + 0.7 prior MI. b0 is solved so that the population mean of p equals
  the requested prevalence for any `confounding` (0: p independent of the confounders; < 0: reversed).
* Culprit from `culprit_mix`; culprit stenosis 0.7 + 0.3 Beta(2.5, 1.2) (> 0.7); other vessels mild disease
  (0-0.6, more with age, diabetes, hypertension, prior MI). The planted ST deviation grows with the culprit
  stenosis inside `st_mv_range`.
* Background subtype: `subtype_mix` on average, tilted per patient (age -> AF, BBB; hypertension -> LVH).
* The ECG itself also moves with the confounders (physiology, not scaled by `confounding`): QRS voltage
  falls 6 % per decade, is 15 % lower in women and 12 % higher with hypertension; PR +4 ms and QTc +3 ms
  per decade; QTc +12 ms, HR +3 bpm and T 15 % smaller in women; QRS +4 ms in men; axis shifts left 4 deg
  per decade and 12 deg with hypertension; diabetes raises HR 4 bpm and lowers RR variability; prior MI
  leaves Q waves and T inversion in an old territory.
* Ranges (normal subtype): HR 52-100 bpm, RR SD 8-90 ms, PR 122-198 ms, P 80-115 ms, QRS 80-106 ms, QTc
  358-442 ms (men) / 368-452 ms (women), axis -30..+90 deg. BBB: QRS 122-150 (RBBB), 130-165 ms (LBBB);
  demand ST: HR 85-130; AF: ventricular rate 60-130, RR coefficient of variation 0.12-0.28.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import brentq

from ..labels import CULPRITS, VESSELS, Confounders, Labels
from .config import SUBTYPES, SynthConfig

OCCLUSION_PATTERNS: dict[str, tuple[str, ...]] = {
    "LAD": ("anterior_st", "hyperacute_t", "de_winter", "wellens"),
    "LCx": ("posterior", "lateral"),
    "RCA": ("inferior", "inferoposterior"),
}
_PATTERN_WEIGHTS: dict[str, tuple[float, ...]] = {
    "LAD": (0.40, 0.30, 0.12, 0.18),
    "LCx": (0.60, 0.40),
    "RCA": (0.65, 0.35),
}
PRIOR_MI_TERRITORIES: tuple[str, ...] = ("inferior", "anterior", "lateral")

# log-odds tilt of each subtype per unit of (age decades over 62, hypertension, diabetes)
_SUBTYPE_TILT: dict[str, tuple[float, float, float]] = {
    "normal": (-0.2, 0.0, 0.0),
    "nonspecific_t": (0.1, 0.2, 0.2),
    "demand_st": (0.2, 0.0, 0.4),
    "lvh_strain": (0.2, 1.2, 0.0),
    "rbbb": (0.35, 0.0, 0.0),
    "lbbb": (0.4, 0.3, 0.0),
    "afib": (0.6, 0.3, 0.0),
}
_CALIBRATION_SEED = 20_241_125
_CALIBRATION_SIZE = 50_000


@dataclass
class PatientParams:
    """Everything that defines one synthetic patient's ECG and labels (times in ms, amplitudes in mV).

    Change a field with `dataclasses.replace` and render with `synthesize_record` to get a controlled
    counterfactual, e.g. the same patient without the occlusion (``culprit="none"``).
    """

    age_years: float = 60.0
    sex: str = "M"
    hypertension: int = 0
    diabetes: int = 0
    prior_mi: int = 0
    prior_mi_territory: str = ""  # "" or one of PRIOR_MI_TERRITORIES (old Q waves / T inversion)
    prior_mi_q_mv: float = 0.0  # depth of the old Q wave in its deepest territory lead
    subtype: str = "normal"
    culprit: str = "none"
    stenosis: tuple[float, float, float] = (0.0, 0.0, 0.0)  # LAD, LCx, RCA luminal narrowing fraction
    pattern: str = ""  # occlusion pattern, one of OCCLUSION_PATTERNS[culprit]; "" when culprit is "none"
    st_mv: float = 0.0  # planted |ST deviation| at J+60 ms in the most affected lead
    territory_jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)  # perturbation of the injury direction
    hr_bpm: float = 72.0
    rr_std_ms: float = 30.0  # beat-to-beat RR standard deviation (sinus); AF uses subtype_params["rr_cv"]
    resp_hz: float = 0.25  # respiration: RR modulation, QRS amplitude modulation, baseline wander
    pr_ms: float = 155.0  # P onset -> QRS onset
    p_dur_ms: float = 100.0
    qrs_ms: float = 92.0
    qtc_ms: float = 405.0  # Bazett: QT = QTc * sqrt(RR in s)
    axis_deg: float = 50.0  # frontal QRS axis (net QRS area in I and aVF)
    qrs_amp_mv: float = 0.95  # frontal projection of the main QRS vector
    qrs_z_ratio: float = 1.4  # posterior / frontal ratio of the main QRS vector (precordial transition)
    t_amp_mv: float = 0.45  # length of the T vector
    t_angle_deg: float = 30.0  # frontal angle of the T vector in VCG space (0 = X, left; 90 = Y, feet)
    p_amp_mv: float = 0.15
    benign_st_mv: float = 0.03  # normal anterior J-point elevation (V2-V3), larger in young men
    subtype_params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.culprit not in CULPRITS:
            raise ValueError(f"culprit must be one of {CULPRITS}, got {self.culprit!r}")
        if self.subtype not in SUBTYPES:
            raise ValueError(f"subtype must be one of {SUBTYPES}, got {self.subtype!r}")
        allowed = OCCLUSION_PATTERNS.get(self.culprit, ("",))
        if self.pattern not in allowed:
            raise ValueError(f"pattern for culprit {self.culprit!r} must be one of {allowed}, got {self.pattern!r}")
        if self.prior_mi_territory not in ("", *PRIOR_MI_TERRITORIES):
            raise ValueError(f"prior_mi_territory must be '' or one of {PRIOR_MI_TERRITORIES}")
        if not 20.0 <= self.hr_bpm <= 250.0:
            raise ValueError(f"hr_bpm must lie in [20, 250], got {self.hr_bpm!r}")
        if not 40.0 <= self.qrs_ms <= 250.0 or not 200.0 <= self.qtc_ms <= 700.0:
            raise ValueError(f"qrs_ms {self.qrs_ms!r} or qtc_ms {self.qtc_ms!r} out of physiological bounds")
        if self.subtype != "afib" and not self.p_dur_ms + 20.0 <= self.pr_ms <= 400.0:
            raise ValueError(f"pr_ms ({self.pr_ms}) must exceed p_dur_ms ({self.p_dur_ms}) by >= 20 ms")
        self.stenosis = tuple(float(s) for s in self.stenosis)
        self.territory_jitter = tuple(float(s) for s in self.territory_jitter)

    @property
    def triage(self) -> int:
        return int(self.culprit != "none")

    def labels(self) -> Labels:
        return Labels(triage=self.triage, culprit=self.culprit, stenosis=self.stenosis, subtype=self.subtype)

    def confounders(self) -> Confounders:
        return Confounders(self.age_years, self.sex, self.hypertension, self.diabetes, self.prior_mi)

    def to_dict(self) -> dict:
        """Plain-Python (JSON-able) copy, kept in ``ecg.meta["synth"]["params"]``."""
        d = asdict(self)
        d["stenosis"], d["territory_jitter"] = list(self.stenosis), list(self.territory_jitter)
        return d


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def draw_confounders(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """Vectorised confounder draw: age (y), male, hypertension, diabetes, prior_mi (0/1 int arrays)."""
    age = np.clip(rng.normal(62.0, 12.0, size), 25.0, 95.0)
    dz = (age - 62.0) / 10.0
    male = (rng.random(size) < 0.6).astype(int)
    htn = (rng.random(size) < _sigmoid(-0.2 + 0.55 * dz)).astype(int)
    dm = (rng.random(size) < _sigmoid(-1.3 + 0.25 * dz + 0.5 * htn)).astype(int)
    pmi = (rng.random(size) < _sigmoid(-2.4 + 0.35 * dz + 0.5 * male + 0.4 * dm)).astype(int)
    return {"age": age, "male": male, "hypertension": htn, "diabetes": dm, "prior_mi": pmi}


def risk_score(conf: dict[str, np.ndarray]) -> np.ndarray:
    """Confounder part of the occlusion log-odds (before multiplying by `confounding`)."""
    dz = (conf["age"] - 62.0) / 10.0
    return (
        0.45 * dz + 0.35 * conf["male"] + 0.45 * conf["hypertension"] + 0.6 * conf["diabetes"] + 0.7 * conf["prior_mi"]
    )


@functools.lru_cache(maxsize=1)
def _calibration_sample() -> dict[str, np.ndarray]:
    return draw_confounders(np.random.default_rng(_CALIBRATION_SEED), _CALIBRATION_SIZE)


@functools.lru_cache(maxsize=64)
def occlusion_intercept(prevalence: float, confounding: float) -> float:
    """b0 such that the population mean of sigmoid(b0 + confounding * risk) equals `prevalence`."""
    if prevalence <= 0.0:
        return -np.inf
    if prevalence >= 1.0:
        return np.inf
    score = confounding * risk_score(_calibration_sample())
    return float(brentq(lambda b: _sigmoid(b + score).mean() - prevalence, -40.0, 40.0, xtol=1e-10))


def occlusion_probability(conf: dict[str, np.ndarray], prevalence: float, confounding: float) -> np.ndarray:
    """P(occlusion | confounders) under the calibrated logistic model."""
    b0 = occlusion_intercept(float(prevalence), float(confounding))
    if np.isinf(b0):
        return np.full(np.shape(conf["age"]), float(b0 > 0))
    return _sigmoid(b0 + confounding * risk_score(conf))


def _subtype_logits(conf: dict[str, np.ndarray]) -> np.ndarray:
    """(n, len(SUBTYPES)) confounder tilt of the subtype log-weights."""
    x = np.stack([(conf["age"] - 62.0) / 10.0, conf["hypertension"], conf["diabetes"]], axis=1)
    return x @ np.array([_SUBTYPE_TILT[s] for s in SUBTYPES]).T


@functools.lru_cache(maxsize=16)
def _subtype_base_logweights(mix: tuple[float, ...]) -> np.ndarray:
    """Per-subtype base log-weights such that the tilted mix averages to `mix` over the population."""
    target = np.asarray(mix)
    logits = _subtype_logits(_calibration_sample())
    logw = np.log(np.where(target > 0, target, 1.0))
    for _ in range(200):  # iterative proportional fitting
        mean = _subtype_probs(logw, logits, target > 0).mean(axis=0)
        if np.abs(mean - target).max() < 1e-4:
            break
        logw = logw + np.log(np.where(target > 0, target / np.maximum(mean, 1e-300), 1.0))
    return logw


def _subtype_probs(logw: np.ndarray, logits: np.ndarray, active: np.ndarray) -> np.ndarray:
    z = np.where(active, logw + logits, -np.inf)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def subtype_probabilities(conf: dict[str, np.ndarray], config: SynthConfig) -> np.ndarray:
    """(n, len(SUBTYPES)) per-patient subtype probabilities (population mean = ``config.subtype_mix``)."""
    mix = tuple(config.subtype_mix[s] for s in SUBTYPES)
    active = np.asarray(mix) > 0
    return _subtype_probs(_subtype_base_logweights(mix), _subtype_logits(conf), active)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _clipped_normal(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    return float(np.clip(rng.normal(mean, sd), lo, hi))


def _subtype_params(rng: np.random.Generator, subtype: str) -> dict[str, float]:
    """Morphology knobs of each subtype (see `morphology.build_template` for how they act)."""
    if subtype == "nonspecific_t":
        return {"t_factor": _u(rng, 0.3, 0.7), "t_rotation_deg": _u(rng, 110, 170), "t_psi_deg": _u(rng, 0, 360)}
    if subtype == "demand_st":
        return {"st_mv": _u(rng, 0.1, 0.25), "t_factor": _u(rng, 0.5, 0.8)}
    if subtype == "lvh_strain":
        return {
            "voltage_factor": _u(rng, 1.4, 1.8),
            "strain_st_mv": _u(rng, 0.05, 0.15),
            "strain_t_mv": _u(rng, 0.15, 0.35),
        }
    if subtype == "rbbb":
        return {"rprime_mv": _u(rng, 0.5, 1.0)}
    if subtype == "lbbb":
        return {"discordant_st_mv": _u(rng, 0.08, 0.2), "notch": _u(rng, 0.3, 0.7)}
    if subtype == "afib":
        return {"fwave_mv": _u(rng, 0.04, 0.12), "fwave_hz": _u(rng, 5.0, 8.0), "rr_cv": _u(rng, 0.12, 0.28)}
    return {}


def sample_patient(
    rng: np.random.Generator,
    config: SynthConfig | None = None,
    *,
    culprit: str | None = None,
    subtype: str | None = None,
) -> PatientParams:
    """Draw one patient: confounders, then labels given confounders, then physiology given both.

    Args:
        rng: the record's generator.
        config: cohort configuration (prevalence, confounding, mixes); defaults to `SynthConfig()`.
        culprit: force the culprit ("none", "LAD", "LCx", "RCA") instead of drawing it from the logistic
            model; the confounders are still drawn (so forced positives have the unconditional mix).
        subtype: force the background subtype instead of drawing it.
    """
    config = config or SynthConfig()
    conf = draw_confounders(rng, 1)
    p_occ = float(occlusion_probability(conf, config.prevalence, config.confounding)[0])
    occluded = rng.random() < p_occ
    vessel = str(rng.choice(VESSELS, p=[config.culprit_mix[v] for v in VESSELS]))
    culprit = culprit if culprit is not None else (vessel if occluded else "none")
    if culprit not in CULPRITS:
        raise ValueError(f"culprit must be one of {CULPRITS}, got {culprit!r}")
    probs = subtype_probabilities(conf, config)[0]
    drawn_subtype = str(SUBTYPES[rng.choice(len(SUBTYPES), p=probs)])
    subtype = subtype if subtype is not None else drawn_subtype
    if subtype not in SUBTYPES:
        raise ValueError(f"subtype must be one of {SUBTYPES}, got {subtype!r}")

    age = float(conf["age"][0])
    dz = (age - 62.0) / 10.0
    male, htn, dm, pmi = (int(conf[k][0]) for k in ("male", "hypertension", "diabetes", "prior_mi"))
    female = 1 - male

    # stenosis: mild background disease everywhere, the culprit > 0.7 (severity scales the planted ST)
    mild = float(np.clip(0.12 + 0.05 * dz + 0.08 * dm + 0.05 * htn + 0.1 * pmi, 0.02, 0.45))
    stenosis = np.clip(mild + 0.15 * rng.standard_normal(3), 0.0, 0.6)
    # drawn whatever the culprit, so that forcing the culprit leaves every other parameter unchanged
    culprit_stenosis = float(np.clip(0.7 + 0.3 * rng.beta(2.5, 1.2), 0.705, 1.0))
    pattern_u, sev_noise = rng.random(), rng.standard_normal()
    jitter = 0.12 * rng.standard_normal(3)
    pattern, st_mv = "", 0.0
    if culprit != "none":
        k = VESSELS.index(culprit)
        stenosis[k] = culprit_stenosis
        names = OCCLUSION_PATTERNS[culprit]
        pattern = names[int(np.searchsorted(np.cumsum(_PATTERN_WEIGHTS[culprit]), pattern_u * 0.999999))]
        severity = (culprit_stenosis - 0.7) / 0.3
        lo, hi = config.st_mv_range
        st_mv = lo + (hi - lo) * float(np.clip(0.15 + 0.85 * severity + 0.1 * sev_noise, 0.0, 1.0))

    territory = str(rng.choice(PRIOR_MI_TERRITORIES, p=[0.45, 0.35, 0.2])) if pmi else ""
    q_mv = _u(rng, 0.15, 0.35) if pmi else 0.0

    hr = _clipped_normal(rng, 72.0 + 3.0 * female + 4.0 * dm, 9.0, 52.0, 100.0)
    rr_std = float(
        np.clip(35.0 * np.exp(0.35 * rng.standard_normal()) * (1 - 0.1 * dz) * (0.75 if dm else 1.0), 8, 90)
    )
    pr = _clipped_normal(rng, 155.0 + 4.0 * dz, 15.0, 122.0, 198.0)
    p_dur = min(_clipped_normal(rng, 100.0, 8.0, 80.0, 115.0), pr - 35.0)
    qrs = _clipped_normal(rng, 90.0 + 4.0 * male, 6.0, 80.0, 106.0)
    qtc = _clipped_normal(rng, 402.0 + 12.0 * female + 3.0 * dz, 14.0, 358.0 + 10.0 * female, 442.0 + 10.0 * female)
    axis = _clipped_normal(rng, 50.0 - 4.0 * dz - 12.0 * htn, 22.0, -30.0, 90.0)
    amp = float(np.exp(0.15 * rng.standard_normal())) * max(0.6, 1 - 0.06 * dz) * (0.85 if female else 1.0)
    amp *= 1.12 if htn else 1.0
    z_ratio = _clipped_normal(rng, 1.4, 0.3, 0.7, 2.1)
    t_amp = _clipped_normal(rng, 0.45 * (0.85 if female else 1.0) * max(0.7, 1 - 0.05 * dz), 0.1, 0.2, 0.75)
    t_angle = _clipped_normal(rng, 30.0 + 0.3 * (axis - 50.0), 12.0, -10.0, 70.0)
    p_amp = _clipped_normal(rng, 0.15, 0.03, 0.07, 0.25)
    benign_st = float(rng.uniform(0.0, 0.08 if male else 0.04)) * max(0.0, 1 - 0.15 * dz)
    resp = _u(rng, 0.15, 0.3)
    sp = _subtype_params(rng, subtype)

    if subtype == "demand_st":
        hr = _clipped_normal(rng, hr + 25.0, 6.0, 85.0, 130.0)
    elif subtype == "lvh_strain":
        amp *= sp["voltage_factor"]
        qrs, axis, z_ratio = min(qrs + 8.0, 112.0), max(axis - 10.0, -30.0), z_ratio + 0.1
    elif subtype in ("rbbb", "lbbb"):
        qrs = _u(rng, 122.0, 150.0) if subtype == "rbbb" else _u(rng, 130.0, 165.0)
        qtc += 0.5 * (qrs - 95.0)  # the wide QRS lengthens QT
        if subtype == "lbbb":
            axis, z_ratio = _clipped_normal(rng, -5.0, 20.0, -45.0, 60.0), _u(rng, 0.9, 1.3)
    elif subtype == "afib":
        hr, p_amp = _clipped_normal(rng, 88.0, 14.0, 60.0, 130.0), 0.0

    return PatientParams(
        age_years=round(age, 1),
        sex="M" if male else "F",
        hypertension=htn,
        diabetes=dm,
        prior_mi=pmi,
        prior_mi_territory=territory,
        prior_mi_q_mv=q_mv,
        subtype=subtype,
        culprit=culprit,
        stenosis=tuple(float(s) for s in stenosis),
        pattern=pattern,
        st_mv=st_mv,
        territory_jitter=tuple(float(j) for j in jitter),
        hr_bpm=hr,
        rr_std_ms=rr_std,
        resp_hz=resp,
        pr_ms=pr,
        p_dur_ms=p_dur,
        qrs_ms=qrs,
        qtc_ms=qtc,
        axis_deg=axis,
        qrs_amp_mv=0.95 * amp,
        qrs_z_ratio=z_ratio,
        t_amp_mv=t_amp,
        t_angle_deg=t_angle,
        p_amp_mv=p_amp,
        benign_st_mv=benign_st,
        subtype_params=sp,
    )
