"""Occlusion patterns: the NSTEMI-grade ST and T changes a culprit vessel plants, as VCG vectors.

An acute occlusion makes an injury current that points at the ischaemic wall. As a dipole it shifts the
ST segment of every lead by that lead's projection of the injury vector, which gives elevation in the
leads facing the territory and reciprocal depression opposite, with no per-lead bookkeeping. The T wave
changes by a second vector (hyperacute = grows toward the territory, Wellens = turns away from it).

Sizing: the injury vector is scaled so that the largest |ST deviation| at J+60 ms over the 12 leads equals
the patient's `st_mv` (0.05-0.2 mV by default: 0.5-2 small boxes, subtle, not STEMI-grade); the T change
is a multiple of the same amount. Directions are in Frank coordinates (X left, Y feet, Z back) and each
patient perturbs them slightly (`territory_jitter`). Resulting leads (unit = the most affected lead):

| culprit | pattern | ST at J+60 ms | T |
|---|---|---|---|
| LAD | anterior_st | V2-V4 up (V3 1.0, V2 0.9, V1 0.5), III/aVF slightly down | taller in V1-V4 |
| LAD | hyperacute_t | V1-V4 up by half | much taller, broad in V1-V4 |
| LAD | de_winter | upsloping J depression V1-V6 (V3 deepest), aVR up | tall in V1-V4 |
| LAD | wellens | V2-V3 barely up | deep inversion V2-V3 |
| LCx | posterior | V1-V3 down (V2 1.0), V5-V6 slightly up | smaller in V1-V3 |
| LCx | lateral | V1-V2 down, I, aVL, V5, V6 up (~0.7), III down | follows ST |
| RCA | inferior | III > aVF > II up, aVL (and I) down | follows ST |
| RCA | inferoposterior | as inferior, plus V2-V4 down | follows ST |
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ecg import LEADS
from .vcg import scale_to_leads

DE_WINTER_DECAY_S = 0.1  # time constant of the upsloping J-point depression
J60_S = 0.06

_ANTERIOR = (0.3, -0.2, -1.0)


@dataclass(frozen=True)
class OcclusionPattern:
    """One territory pattern.

    Attributes:
        culprit: the vessel.
        st_direction: VCG direction of the ST-plateau injury vector.
        st_fraction: plateau size as a fraction of the patient's `st_mv`.
        t_direction: VCG direction of the T-wave change.
        t_fraction: T change as a multiple of `st_mv` (sized like the ST vector); negative inverts.
        j_direction: VCG direction of a J-point depression that decays over ~100 ms (de Winter), or None.
    """

    culprit: str
    st_direction: tuple[float, float, float]
    st_fraction: float
    t_direction: tuple[float, float, float]
    t_fraction: float
    j_direction: tuple[float, float, float] | None = None


PATTERNS: dict[str, OcclusionPattern] = {
    "anterior_st": OcclusionPattern("LAD", _ANTERIOR, 1.0, _ANTERIOR, 1.0),
    "hyperacute_t": OcclusionPattern("LAD", _ANTERIOR, 0.5, _ANTERIOR, 3.0),
    "de_winter": OcclusionPattern("LAD", _ANTERIOR, 0.0, _ANTERIOR, 4.0, j_direction=(-0.5, -0.3, 1.0)),
    "wellens": OcclusionPattern("LAD", _ANTERIOR, 0.3, _ANTERIOR, -6.0),
    "posterior": OcclusionPattern("LCx", (0.45, 0.15, 1.0), 1.0, (0.45, 0.15, 1.0), 0.8),
    "lateral": OcclusionPattern("LCx", (1.0, -0.5, 0.8), 1.0, (1.0, -0.5, 0.8), 1.0),
    "inferior": OcclusionPattern("RCA", (-0.1, 1.0, -0.05), 1.0, (-0.1, 1.0, -0.05), 0.8),
    "inferoposterior": OcclusionPattern("RCA", (-0.2, 1.0, 0.25), 1.0, (-0.2, 1.0, 0.25), 0.8),
}


def _perturb(direction: tuple[float, float, float], jitter: tuple[float, float, float]) -> np.ndarray:
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d) + np.asarray(jitter)
    return d / np.linalg.norm(d)


def occlusion_vectors(
    pattern: str, st_mv: float, jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """VCG vectors (mV) of one occlusion: (ST plateau, J-point depression at J, T-wave change).

    The J-point vector is the value at the J point; with its decay it is `st_mv` in its largest lead at
    J+60 ms. Returns three zero vectors for ``pattern=""`` (no occlusion).
    """
    zero = np.zeros(3)
    if not pattern:
        return zero, zero, zero
    pat = PATTERNS[pattern]
    st = scale_to_leads(_perturb(pat.st_direction, jitter), pat.st_fraction * st_mv, LEADS)
    t = scale_to_leads(_perturb(pat.t_direction, jitter), abs(pat.t_fraction) * st_mv, LEADS)
    t = t * np.sign(pat.t_fraction)
    j = zero
    if pat.j_direction is not None:
        j = scale_to_leads(_perturb(pat.j_direction, jitter), st_mv * np.exp(J60_S / DE_WINTER_DECAY_S), LEADS)
    return st, j, t
