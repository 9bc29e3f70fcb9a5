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

Actions: one edit per step, a discrete choice of (target, segment, direction, step size) over 4 segments x {lower,
raise} x the configured step sizes (e.g. 0.1 / 0.2 / 0.3 mV): ReLAX's hybrid "which feature, how much" with the
amount on a grid. The target is one of the 12 leads (``targets="lead"``) or one of the coronary territories
(``targets="territory"``: anterior V1-V4, lateral I/aVL/V5/V6, inferior II/III/aVF, and aVR); a territory action
edits the territory's lead whose value of that segment is the most extreme the other way (lowering: the highest,
raising: the lowest) among those the edit is allowed on, so "lower the inferior ST where it is highest" names one
concrete edit in every state. A mask removes actions that cannot be applied (no P wave, a QRS too small to scale, a
cumulative edit over `MAX_EDIT_MV`, a measurement leaving its physiological bounds, or reversing an earlier edit of
the same lead and segment).
"""

from __future__ import annotations

import numpy as np

from ..ecg import LEADS
from .edits import SEGMENT_WORDS, SEGMENTS, Edit

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


TARGETS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "lead": tuple((lead, (lead,)) for lead in LEADS),
    # the coronary territories of DOMAIN.md (LAD anterior, LCx lateral, RCA inferior) and aVR, which none claims
    "territory": (
        ("anterior", ("V1", "V2", "V3", "V4")),
        ("lateral", ("I", "aVL", "V5", "V6")),
        ("inferior", ("II", "III", "aVF")),
        ("aVR", ("aVR",)),
    ),  # fmt: skip
}


class ActionSpace:
    """Discrete edits: index = ((target * 4 + segment) * 2 + direction) * n_levels + level.

    Args:
        levels_mv: the step sizes, mV (positive).
        targets: "lead" (one target per lead) or "territory" (one per lead group of `TARGETS`; the edited lead is
            chosen in the state by `resolve`).
    """

    def __init__(self, levels_mv: tuple[float, ...] | list[float], targets: str = "lead"):
        levels = tuple(float(v) for v in levels_mv)
        if not levels or any(v <= 0 for v in levels):
            raise ValueError(f"levels_mv must be positive step sizes in mV, got {levels_mv}")
        if targets not in TARGETS:
            raise ValueError(f"targets must be one of {tuple(TARGETS)}, got {targets!r}")
        self.levels_mv, self.targets = levels, targets
        self.target_names = [name for name, _ in TARGETS[targets]]
        groups = [[LEADS.index(lead) for lead in leads] for _, leads in TARGETS[targets]]
        n_levels, n_seg = len(levels), len(SEGMENTS)
        self.n = len(groups) * n_seg * 2 * n_levels
        index = np.arange(self.n)
        self.target = index // (2 * n_levels * n_seg)  # (A,)
        self.segment = (index // (2 * n_levels)) % n_seg  # (A,)
        self.sign = np.where((index // n_levels) % 2 == 0, -1.0, 1.0)  # direction 0 lowers, 1 raises
        self.size_mv = np.array(levels)[index % n_levels]
        self.delta_mv = self.sign * self.size_mv  # (A,) signed step
        width = max(len(g) for g in groups)
        # (A, width) the slots (lead * 4 + segment) an action may edit, -1 padding
        self.members = np.full((self.n, width), -1, dtype=np.int64)
        for a in range(self.n):
            leads = groups[self.target[a]]
            self.members[a, : len(leads)] = np.asarray(leads) * n_seg + self.segment[a]
        # (A, width) the single-slot edit (`slot_action` layout) each member would take (padding: slot 0, unused)
        self.member_actions = self.slot_action(np.maximum(self.members, 0), (self.sign > 0)[:, None],
                                               (index % n_levels)[:, None])  # fmt: skip
        self.limb_share = np.array([np.mean([lead < 6 for lead in g]) for g in groups])[self.target]
        # (N_SLOTS * 2,) the edit (target, segment, direction) that moves slot s in direction d: index s * 2 + d
        target_of_lead = {lead: t for t, g in enumerate(groups) for lead in g}
        slot_lead, slot_seg = np.divmod(np.arange(N_SLOTS), n_seg)
        base = (np.array([target_of_lead[int(lead)] for lead in slot_lead]) * n_seg + slot_seg) * 2
        self.edit_of_slot = (base[:, None] + np.arange(2)[None]).reshape(-1)

    def __len__(self) -> int:
        return self.n

    @property
    def single_leads(self) -> bool:
        return self.members.shape[1] == 1

    @property
    def slot(self) -> np.ndarray:
        """(A,) the slot each action edits (single-lead targets only: a territory's slot depends on the state)."""
        if not self.single_leads:
            raise ValueError("a territory action edits a lead chosen in the state: use ActionSpace.resolve")
        return self.members[:, 0]

    def descriptors(self) -> np.ndarray:
        """(A, targets + 4 + 4) float32 action features: target and segment one-hot, direction, size / largest
        size, signed size, and the share of limb leads in the target."""
        size = self.size_mv / max(self.levels_mv)
        return np.concatenate(
            [np.eye(len(self.target_names))[self.target], np.eye(len(SEGMENTS))[self.segment],
             np.stack([self.sign, size, self.sign * size, self.limb_share], axis=1)], axis=1,
        ).astype(np.float32)  # fmt: skip

    def resolve(self, actions: np.ndarray, amplitudes: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """(N,) slot each action edits: among the target's leads (those with `allowed` when given), the one whose
        value is the most extreme the other way: the highest when lowering, the lowest when raising (first lead on
        ties).

        Args:
            actions: (N,) action indices.
            amplitudes: (N, 48) current measurements.
            allowed: (N, N_SLOTS * 2 * n_levels) which single-slot edits are allowed (see `slot_action`).
        """
        actions = np.asarray(actions, dtype=np.int64)
        members = self.members[actions]  # (N, W)
        rows = np.arange(len(actions))[:, None]
        key = -self.sign[actions][:, None] * np.asarray(amplitudes)[rows, np.maximum(members, 0)]
        ok = members >= 0
        if allowed is not None:
            ok &= np.asarray(allowed)[rows, self.member_actions[actions]]
        key = np.where(ok, key, -np.inf)
        return members[np.arange(len(actions)), key.argmax(axis=1)]

    def slot_action(self, slot: np.ndarray, raises: np.ndarray, level: np.ndarray) -> np.ndarray:
        """Index of the single-slot edit (slot, direction, level) in an (N_SLOTS * 2 * n_levels) layout."""
        return (np.asarray(slot) * 2 + np.asarray(raises, dtype=np.int64)) * len(self.levels_mv) + np.asarray(level)

    def edit(self, action: int) -> Edit:
        """The concrete edit of a single-lead action."""
        lead, seg = SLOTS[int(self.slot[action])]
        return Edit(lead, seg, float(self.delta_mv[action]))

    def name(self, action: int) -> str:
        """Words, e.g. "lower V3 T wave by 0.10 mV" or "lower the ST segment (J+60 ms) of the inferior lead (II, III,
        aVF) where it is highest by 0.10 mV"."""
        if (self.members[action] >= 0).sum() == 1:
            lead, seg = SLOTS[int(self.members[action, 0])]
            return Edit(lead, seg, float(self.delta_mv[action])).describe()
        seg = SEGMENTS[self.segment[action]]
        lower = self.sign[action] < 0
        verb = ("reduce" if lower else "increase") if seg == "QRS" else ("lower" if lower else "raise")
        where = ("largest" if lower else "smallest") if seg == "QRS" else ("highest" if lower else "lowest")
        target = self.target_names[self.target[action]]
        leads = ", ".join(TARGETS[self.targets][self.target[action]][1])
        return f"{verb} the {SEGMENT_WORDS[seg]} of the {target} lead ({leads}) where it is {where} by " \
               f"{self.size_mv[action]:.2f} mV"  # fmt: skip

    def index(self, lead: str, segment: str, amplitude_mv: float) -> int:
        """The action of a single-lead edit (its size must be one of the levels); with territory targets, the action
        of the lead's territory, which edits that lead only where it is the territory's most extreme."""
        slot = SLOTS.index((lead, segment))
        level = int(np.argmin([abs(abs(amplitude_mv) - v) for v in self.levels_mv]))
        edit = self.edit_of_slot[slot * 2 + int(amplitude_mv > 0)]
        return int(edit * len(self.levels_mv) + level)
