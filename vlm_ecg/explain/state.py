"""The explainer's state vector and its discrete action space.

State (what the agent and the distilled tree see, one row per episode step; names are what the tree's rules print):

| features | meaning |
|---|---|
| ``"{lead} {segment} (mV)"`` x 48 | current P, QRS (dominant deflection size), ST (J+60 ms), T (at T peak) |
| ``"{lead} {segment} edit (mV)"`` x 48 | edit applied so far to that lead and segment (0 when untouched) |
| ``"probability"`` | the model's current decision probability |
| ``"margin"`` | (logit(probability) - logit(threshold)) / margin scale: > 0 still positive, < 0 flipped |
| ``"edits so far"``, ``"total edit (mV)"``, ``"steps taken"`` | the edit budget spent |

Measurements come from `BeatFrame.amplitudes` (the median beat plus the edits, read at fixed fiducials), so they
are exact for the edited record and cost nothing to update.

Actions: one edit per step, a discrete choice of (lead, segment, direction, step size) over 12 leads x 4 segments
x {lower, raise} x the configured step sizes (e.g. 0.05 / 0.10 / 0.20 mV): ReLAX's hybrid "which feature, how much"
with the amount on a grid. A mask removes actions that cannot be applied (no P wave, a QRS too small to scale, a
cumulative edit over `MAX_EDIT_MV`, a measurement leaving its physiological bounds, or reversing an earlier edit of
the same lead and segment).
"""

from __future__ import annotations

import numpy as np

from ..ecg import LEADS
from .edits import SEGMENTS, Edit

SLOTS: tuple[tuple[str, str], ...] = tuple((lead, seg) for lead in LEADS for seg in SEGMENTS)
N_SLOTS = len(SLOTS)
GLOBAL_STATE: tuple[str, ...] = ("probability", "margin", "edits so far", "total edit (mV)", "steps taken")


def feature_names() -> list[str]:
    """Names of the state vector's entries, in order."""
    return [*(f"{lead} {seg} (mV)" for lead, seg in SLOTS), *(f"{lead} {seg} edit (mV)" for lead, seg in SLOTS),
            *GLOBAL_STATE]  # fmt: skip


def fixed_scales() -> np.ndarray:
    """(F,) scale of each feature that is constant on the start states (NaN: fit from data): edits 0.1 mV, edit
    count 1, total edit 0.2 mV, steps 1. Standardising those by their (zero) spread at the start would explode."""
    scales = np.full(len(feature_names()), np.nan)
    scales[N_SLOTS : 2 * N_SLOTS] = 0.1
    scales[2 * N_SLOTS + 2 :] = (1.0, 0.2, 1.0)
    return scales


def state_features(
    amplitudes: np.ndarray, edits: np.ndarray, prob: np.ndarray, margin: np.ndarray, steps: np.ndarray
) -> np.ndarray:
    """(N, len(feature_names())) float32 state of N episodes.

    Args:
        amplitudes: (N, 12, 4) current measurements, mV.
        edits: (N, 48) cumulative edit per (lead, segment) slot, mV.
        prob: (N,) decision probability.
        margin: (N,) scaled logit distance to the threshold.
        steps: (N,) steps taken.
    """
    n = amplitudes.shape[0]
    glob = np.stack(
        [prob, margin, (np.abs(edits) > 1e-9).sum(axis=1), np.abs(edits).sum(axis=1), steps], axis=1
    ).astype(np.float64)
    return np.concatenate([amplitudes.reshape(n, -1), edits, glob], axis=1).astype(np.float32)


class ActionSpace:
    """Discrete edits: index = ((slot * 2) + direction) * n_levels + level, slot = lead * 4 + segment.

    Args:
        levels_mv: the step sizes, mV (positive).
    """

    def __init__(self, levels_mv: tuple[float, ...] | list[float]):
        levels = tuple(float(v) for v in levels_mv)
        if not levels or any(v <= 0 for v in levels):
            raise ValueError(f"levels_mv must be positive step sizes in mV, got {levels_mv}")
        self.levels_mv = levels
        n_levels = len(levels)
        self.n = N_SLOTS * 2 * n_levels
        index = np.arange(self.n)
        self.slot = index // (2 * n_levels)  # (A,)
        self.sign = np.where((index // n_levels) % 2 == 0, -1.0, 1.0)  # direction 0 lowers, 1 raises
        self.size_mv = np.array(levels)[index % n_levels]
        self.delta_mv = self.sign * self.size_mv  # (A,) signed step

    def __len__(self) -> int:
        return self.n

    def descriptors(self) -> np.ndarray:
        """(A, 12 + 4 + 4) float32 action features: lead and segment one-hot, direction, size / largest size,
        signed size, and whether the lead is a limb lead."""
        lead, seg = self.slot // len(SEGMENTS), self.slot % len(SEGMENTS)
        size = self.size_mv / max(self.levels_mv)
        return np.concatenate(
            [np.eye(len(LEADS))[lead], np.eye(len(SEGMENTS))[seg],
             np.stack([self.sign, size, self.sign * size, (lead < 6).astype(float)], axis=1)], axis=1,
        ).astype(np.float32)  # fmt: skip

    def edit(self, action: int) -> Edit:
        lead, seg = SLOTS[int(self.slot[action])]
        return Edit(lead, seg, float(self.delta_mv[action]))

    def name(self, action: int) -> str:
        """Words, e.g. "lower V3 T wave by 0.10 mV"."""
        return self.edit(action).describe()

    def index(self, lead: str, segment: str, amplitude_mv: float) -> int:
        """The action of an edit (its size must be one of the levels)."""
        slot = SLOTS.index((lead, segment))
        level = int(np.argmin([abs(abs(amplitude_mv) - v) for v in self.levels_mv]))
        return (slot * 2 + int(amplitude_mv > 0)) * len(self.levels_mv) + level
