"""The dipole -> 12-lead projection (Dower) and the rendering of Gaussian waves into a beat template.

The heart is a single dipole, the vectorcardiogram (VCG), in Frank coordinates: X to the patient's left,
Y to the feet, Z to the back (mV). The Dower matrix maps it to the 8 independent leads I, II, V1-V6; the
other four limb leads follow exactly from I and II (Einthoven / Goldberger), so every lead of a record is
a projection of the same dipole and the lead identities hold by construction.
"""

from __future__ import annotations

import numpy as np

from ..ecg import LEADS

INDEPENDENT_LEADS: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")

# Dower (1988) VCG -> lead transform, rows = INDEPENDENT_LEADS, columns = X, Y, Z (DOMAIN.md).
DOWER = np.array(
    [
        [0.632, -0.235, 0.059],
        [0.235, 1.066, -0.132],
        [-0.515, 0.157, -0.917],
        [0.044, 0.164, -1.387],
        [0.882, 0.098, -1.277],
        [1.213, 0.127, -0.601],
        [1.125, 0.127, -0.086],
        [0.831, 0.076, 0.230],
    ]
)

# Each of the 12 leads as a combination of I and II (Einthoven / Goldberger), used for limb leads only.
_LIMB_FROM_I_II = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0], [-0.5, -0.5], [1.0, -0.5], [-0.5, 1.0]])

LEAD_MATRIX = np.vstack([_LIMB_FROM_I_II @ DOWER[:2], DOWER[2:]])
"""(12, 3): projection of a VCG vector onto every lead in `LEADS` order."""


def lead_projection(vector: np.ndarray, leads: tuple[str, ...] = LEADS) -> np.ndarray:
    """Amplitude (mV) that a constant VCG vector (3,) shows in each of `leads`."""
    return lead_rows(leads) @ np.asarray(vector, dtype=np.float64)


def lead_rows(leads: tuple[str, ...]) -> np.ndarray:
    """(len(leads), 3): the rows of `LEAD_MATRIX` for the named leads."""
    return LEAD_MATRIX[[LEADS.index(name) for name in leads]]


def scale_to_leads(direction: np.ndarray, amplitude_mv: float, leads: tuple[str, ...]) -> np.ndarray:
    """A VCG vector along `direction` whose largest projection among `leads` has magnitude `amplitude_mv`.

    This is how territory changes are sized: "0.1 mV of ST elevation in the most affected territory lead"
    fixes the length of the injury vector, and the other leads follow from the geometry.
    """
    d = np.asarray(direction, dtype=np.float64)
    peak = np.abs(lead_rows(leads) @ d).max()
    return d * (amplitude_mv / peak)


def expand_to_twelve_leads(independent: np.ndarray) -> np.ndarray:
    """(8, n) I, II, V1-V6 -> (12, n) float32 in `LEADS` order, the limb leads derived exactly from I and II."""
    limb = _LIMB_FROM_I_II @ independent[:2]  # (6, 2) @ (2, n) -> (6, n)
    return np.concatenate([limb, independent[2:]], axis=0).astype(np.float32)


def render_waves(
    t_s: np.ndarray,
    centers_s: np.ndarray,
    sigma_left_s: np.ndarray,
    sigma_right_s: np.ndarray,
    vectors: np.ndarray,
) -> np.ndarray:
    """Sum of asymmetric Gaussian waves, each a VCG vector times a bump in time.

    Args:
        t_s: (L,) time axis in s.
        centers_s, sigma_left_s, sigma_right_s: (W,) wave peak times and widths before / after the peak, s.
        vectors: (W, 3) VCG amplitude of each wave at its peak, mV.

    Returns:
        (3, L) VCG in mV.
    """
    d = t_s[None, :] - centers_s[:, None]  # (W, L)
    sigma = np.where(d < 0, sigma_left_s[:, None], sigma_right_s[:, None])
    bumps = np.exp(-0.5 * (d / sigma) ** 2)
    return vectors.T @ bumps  # (3, W) @ (W, L) -> (3, L)


def smooth_step(t_s: np.ndarray, at_s: float, width_s: float) -> np.ndarray:
    """Logistic step from 0 to 1 centred on `at_s` (10-90 % rise in about 4.4 * `width_s`)."""
    return 0.5 * (1.0 + np.tanh((t_s - at_s) / (2.0 * width_s)))
