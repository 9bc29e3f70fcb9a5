"""The counterfactual MDP: a batch of ECGs, one physiological edit per step, the model queried as a black box.

An episode starts from an ECG the model calls positive (decision probability >= the run's threshold). Each step
applies one edit (`state.ActionSpace`) on every beat, queries the model once for the edited record, and pays

    reward = progress_weight * (max(m_t, 0) - max(m_t+1, 0))        # shaped progress towards the threshold
             + flip_bonus * [m_t+1 < 0]                              # the decision flipped (episode ends)
             - size_cost_per_mv * |step in mV| - count_cost * [a new lead/segment is touched]

with m = (logit p - logit threshold) / margin_scale, the scaled logit distance to the decision (margin_scale makes
rewards comparable between a confident model and a near-chance one). The progress term is potential-based
(Ng et al. 1999) with potential -max(m, 0): it leaves the best policy unchanged and pays nothing for overshooting,
so the return is "flip, with the smallest and fewest edits". Episodes end on a flip, after `max_steps`, or when no
edit is left. Many episodes run side by side and every step is ONE batched model call for all of them; results are
cached per (ECG, edits), so revisiting a state costs no query.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..ecg import Ecg
from ..errors import EcgError
from .edits import LIMB_POLICIES, MAX_EDIT_MV, BeatFrame, Edit
from .state import N_SLOTS, SLOTS, TARGETS, ActionSpace, state_features

logger = logging.getLogger(__name__)


def _help(text: str, default: object) -> object:
    return field(default=default, metadata={"help": text})


@dataclass
class EnvConfig:
    """The edit space and the reward (saved with the agent; the greedy baseline uses the same)."""

    levels_mv: tuple[float, ...] = _help("step sizes an action can take, mV", (0.1, 0.2, 0.3))
    max_steps: int = _help(
        "edits per episode at most (at 10, every ECG the agent failed to flip had used all 10, mostly 0.1 mV steps)",
        20,
    )
    limb_policy: str = _help("'dipole' (limb leads stay Einthoven-consistent) or 'isolated'", "dipole")
    targets: str = _help(
        "what an action names: 'lead' (any of the 12 leads) or 'territory' (a coronary territory; the edit goes to "
        "its lead where the segment is most extreme the other way)",
        "lead",
    )
    flip_bonus: float = _help("reward for flipping the decision", 1.0)
    progress_weight: float = _help("weight of the shaped progress towards the threshold (scaled logit)", 1.0)
    size_cost_per_mv: float = _help("cost per mV of edit", 1.0)
    count_cost: float = _help("cost of touching one more (lead, segment)", 0.05)

    def __post_init__(self) -> None:
        self.levels_mv = tuple(float(v) for v in self.levels_mv)
        if self.limb_policy not in LIMB_POLICIES:
            raise ValueError(f"limb_policy must be one of {LIMB_POLICIES}, got {self.limb_policy!r}")
        if self.targets not in TARGETS:
            raise ValueError(f"targets must be one of {tuple(TARGETS)}, got {self.targets!r}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if any(v <= 0 or v > MAX_EDIT_MV for v in self.levels_mv):
            raise ValueError(f"levels_mv must lie in (0, {MAX_EDIT_MV}] mV, got {self.levels_mv}")


class BlackBox:
    """The model as a function from signals to the decision probability; counts queries and their time.

    Args:
        predictor: a `vlm_ecg.predict.Predictor` (anything with ``predict_signals``, ``decision_prob`` and
            ``decision_threshold``).
        batch_size: ECGs per model call.
    """

    def __init__(self, predictor, batch_size: int = 32):
        self.predictor = predictor
        self.threshold = float(predictor.decision_threshold)
        self.batch_size = batch_size
        self.n_queries = 0
        self.seconds = 0.0

    def __call__(self, signals: np.ndarray, strata: np.ndarray | None = None) -> np.ndarray:
        """(B, 12, n) mV -> (B,) decision probabilities."""
        if len(signals) == 0:
            return np.zeros(0)
        start = time.perf_counter()
        result = self.predictor.predict_signals(signals, strata, batch_size=self.batch_size)
        self.seconds += time.perf_counter() - start
        self.n_queries += len(signals)
        return np.asarray(self.predictor.decision_prob(result), dtype=np.float64)


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


@dataclass
class EcgPool:
    """ECGs prepared for editing: frames, signals, strata, measurement effects and the model's first answer."""

    frames: list[BeatFrame]
    signals: np.ndarray  # (P, 12, n) float32 mV
    strata: np.ndarray  # (P,)
    prob0: np.ndarray  # (P,) decision probability of the unedited ECG
    base: np.ndarray  # (P, 48) measurements
    lo: np.ndarray  # (P, 48) physiological bounds
    hi: np.ndarray
    available: np.ndarray  # (P, 48) bool
    effects: np.ndarray  # (P, 48 slots, 48 measurements)
    ids: list[str]
    keep: np.ndarray  # (P,) indices into the ECG list the pool was built from

    def __len__(self) -> int:
        return len(self.frames)

    @classmethod
    def build(cls, ecgs: list[Ecg], blackbox: BlackBox, strata=None, limb_policy: str = "dipole",
              prob0: np.ndarray | None = None, skip_errors: bool = True) -> EcgPool:  # fmt: skip
        """Delineate every ECG and query the model for the unedited ones (unless `prob0` is given).

        Raises:
            EcgSignalError: a record cannot be delineated and `skip_errors` is False (otherwise it is skipped with
                a log line).
        """
        frames, keep = [], []
        for i, ecg in enumerate(ecgs):
            try:
                frames.append(BeatFrame.from_ecg(ecg))
                keep.append(i)
            except EcgError as exc:
                if not skip_errors:
                    raise
                logger.info("explainer: skipping %s (%s)", ecg.source, exc.problem)
        keep = np.asarray(keep, dtype=np.int64)
        signals = np.stack([ecgs[i].signal for i in keep]).astype(np.float32) if keep.size else np.zeros((0, 12, 1))
        strata = np.full(len(ecgs), -1) if strata is None else np.asarray(strata)
        strata = strata[keep]
        prob0 = blackbox(signals, strata) if prob0 is None else np.asarray(prob0, dtype=np.float64)[keep]
        bounds = [f.bounds() for f in frames]
        return cls(
            frames=frames,
            signals=signals,
            strata=strata,
            prob0=prob0,
            base=np.stack([f.amplitudes().reshape(-1) for f in frames]) if frames else np.zeros((0, N_SLOTS)),
            lo=np.stack([b[0].reshape(-1) for b in bounds]) if frames else np.zeros((0, N_SLOTS)),
            hi=np.stack([b[1].reshape(-1) for b in bounds]) if frames else np.zeros((0, N_SLOTS)),
            available=np.stack([f.available.reshape(-1) for f in frames]) if frames else np.zeros((0, N_SLOTS), bool),
            effects=np.stack([f.effects(limb_policy) for f in frames]).astype(np.float32)
            if frames
            else np.zeros((0, N_SLOTS, N_SLOTS), np.float32),
            ids=[str(ecgs[i].meta.get("id", ecgs[i].source)) for i in keep],
            keep=keep,
        )


@dataclass
class Episodes:
    """N episodes run side by side."""

    idx: np.ndarray  # (N,) pool index
    edits: np.ndarray  # (N, 48) cumulative edit per slot, mV
    prob: np.ndarray  # (N,)
    margin: np.ndarray  # (N,)
    steps: np.ndarray  # (N,)
    active: np.ndarray  # (N,) bool
    order: list[list[int]]  # slots in the order they were first edited
    probs: list[list[float]]  # probability after each step

    @property
    def flipped(self) -> np.ndarray:
        return self.margin < 0

    def take(self, rows: np.ndarray) -> Episodes:
        """Copies of episodes `rows` (repeats allowed): candidate edits are tried on copies of the same state."""
        rows = np.asarray(rows, dtype=np.int64)
        return Episodes(idx=self.idx[rows], edits=self.edits[rows].copy(), prob=self.prob[rows].copy(),
                        margin=self.margin[rows].copy(), steps=self.steps[rows].copy(),
                        active=self.active[rows].copy(), order=[list(self.order[i]) for i in rows],
                        probs=[list(self.probs[i]) for i in rows])  # fmt: skip

    def repeat(self, i: int, n: int) -> Episodes:
        """n copies of episode i (the greedy search tries every action from the same state)."""
        return self.take(np.full(n, i))

    def edit_list(self, i: int) -> list[Edit]:
        """Episode i's edits, merged per (lead, segment), in the order first applied."""
        return [Edit(*SLOTS[s], round(float(self.edits[i, s]), 6)) for s in self.order[i] if self.edits[i, s] != 0]


class EditEnv:
    """The MDP over a pool of ECGs (see the module docstring).

    Args:
        pool: the prepared ECGs.
        blackbox: the model.
        config: edit space and reward.
        margin_scale: logit units of one "margin" unit (see `margin_scale`).
        direction: +1 flips positive decisions to negative (what the agent learns); -1 the other way (used by the
            greedy search to say what would make a negative decision positive).
    """

    def __init__(self, pool: EcgPool, blackbox: BlackBox, config: EnvConfig, margin_scale: float = 1.0,
                 direction: int = 1):  # fmt: skip
        if direction not in (1, -1):
            raise ValueError(f"direction must be +1 or -1, got {direction}")
        self.pool, self.blackbox, self.config = pool, blackbox, config
        self.actions = ActionSpace(config.levels_mv, config.targets)
        self.slot_edits = ActionSpace(config.levels_mv, "lead")  # the concrete edits a territory action resolves to
        self.margin_scale = float(margin_scale)
        self.direction = direction
        self.threshold_logit = float(logit(blackbox.threshold))
        self._cache: dict[tuple, float] = {}

    def margin(self, prob: np.ndarray) -> np.ndarray:
        """Scaled logit distance to the threshold, signed so that < 0 means flipped."""
        return self.direction * (logit(prob) - self.threshold_logit) / self.margin_scale

    def start(self, idx: np.ndarray) -> Episodes:
        """New episodes on pool ECGs `idx` (no query: the first probability is known)."""
        idx = np.asarray(idx, dtype=np.int64)
        prob = self.pool.prob0[idx].astype(np.float64)
        margin = self.margin(prob)
        ep = Episodes(idx=idx, edits=np.zeros((idx.size, N_SLOTS)), prob=prob, margin=margin,
                      steps=np.zeros(idx.size, dtype=np.int64), active=margin >= 0,
                      order=[[] for _ in idx], probs=[[float(p)] for p in prob])  # fmt: skip
        ep.active &= self.masks(ep).any(axis=1)
        return ep

    def amplitudes(self, ep: Episodes) -> np.ndarray:
        """(N, 48) current measurements (exact: linear in the edits)."""
        return self.pool.base[ep.idx] + np.einsum("ns,nsm->nm", ep.edits, self.pool.effects[ep.idx])

    def slot_masks(self, ep: Episodes) -> np.ndarray:
        """(N, N_SLOTS * 2 * n_levels) which concrete single-lead edits can be applied (inactive episodes: none)."""
        a = self.slot_edits
        cur = ep.edits[:, a.slot]  # (N, A)
        ok = self.pool.available[ep.idx][:, a.slot]
        ok &= np.abs(cur + a.delta_mv) <= MAX_EDIT_MV + 1e-9
        ok &= cur * a.delta_mv >= 0  # never reverse an earlier edit of the same lead and segment
        amps = self.amplitudes(ep)  # (N, 48)
        eff = self.pool.effects[ep.idx][:, a.slot]  # (N, A, 48)
        new = amps[:, None, :] + a.delta_mv[None, :, None] * eff
        lo, hi = self.pool.lo[ep.idx][:, None], self.pool.hi[ep.idx][:, None]
        ok &= ((new >= lo - 1e-6) & (new <= hi + 1e-6)).all(axis=2)
        ok &= ep.active[:, None]
        return ok

    def masks(self, ep: Episodes) -> np.ndarray:
        """(N, A) which actions can be taken: a territory action when the edit is allowed on one of its leads."""
        ok = self.slot_masks(ep)
        a = self.actions
        if a.single_leads:
            return ok
        return (ok[:, a.member_actions] & (a.members >= 0)[None]).any(axis=2)

    def observe(self, ep: Episodes) -> tuple[np.ndarray, np.ndarray]:
        """(states (N, F) float32, masks (N, A) bool)."""
        amps = self.amplitudes(ep).reshape(-1, 12, 4)
        return state_features(amps, ep.edits, ep.prob, ep.margin, ep.steps), self.masks(ep)

    def signals(self, ep: Episodes, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 12, n) edited records of episodes `rows`."""
        out = []
        for i in rows:
            p = ep.idx[i]
            frame = self.pool.frames[p]
            edits = [Edit(*SLOTS[s], float(ep.edits[i, s])) for s in np.flatnonzero(ep.edits[i])]
            out.append(frame.add_to_signal(self.pool.signals[p], frame.waveform(edits, self.config.limb_policy)))
        return np.stack(out) if out else np.zeros((0, *self.pool.signals.shape[1:]), np.float32)

    def query(self, ep: Episodes, rows: np.ndarray) -> np.ndarray:
        """Decision probabilities of episodes `rows` as they stand, from the cache or one batched model call."""
        keys = [(int(ep.idx[i]), tuple(np.round(ep.edits[i], 5))) for i in rows]
        missing = [k for k, key in enumerate(keys) if key not in self._cache]
        if missing:
            rows_m = np.asarray(rows)[missing]
            probs = self.blackbox(self.signals(ep, rows_m), self.pool.strata[ep.idx[rows_m]])
            for k, p in zip(missing, probs, strict=True):
                self._cache[keys[k]] = float(p)
        return np.array([self._cache[key] for key in keys])

    def try_every_edit(self, ep: Episodes, i: int) -> tuple[np.ndarray, Episodes, np.ndarray]:
        """Every allowed edit applied to its own copy of episode i, in one batched model call: (actions, the copies
        after the step, rewards). The greedy search's step and the SAC sweep's experience."""
        actions = np.flatnonzero(self.masks(ep)[i])
        trial = ep.repeat(i, len(actions))
        return actions, trial, self.step(trial, actions)

    def step(self, ep: Episodes, actions: np.ndarray) -> np.ndarray:
        """Apply `actions` (N,) to the active episodes; returns rewards (N,) (0 for inactive ones)."""
        c, a = self.config, self.actions
        rows = np.flatnonzero(ep.active)
        rewards = np.zeros(len(ep.idx))
        if rows.size == 0:
            return rewards
        act = np.asarray(actions)[rows]
        if a.single_leads:
            slots = a.slot[act]
        else:
            slots = a.resolve(act, self.amplitudes(ep)[rows], self.slot_masks(ep)[rows])
        new_slot = ep.edits[rows, slots] == 0
        ep.edits[rows, slots] += a.delta_mv[act]
        for i, s, new in zip(rows, slots, new_slot, strict=True):
            if new:
                ep.order[i].append(int(s))
        prob = self.query(ep, rows)
        margin = self.margin(prob)
        progress = np.maximum(ep.margin[rows], 0) - np.maximum(margin, 0)
        flipped = margin < 0
        rewards[rows] = (
            c.progress_weight * progress
            + c.flip_bonus * flipped
            - c.size_cost_per_mv * a.size_mv[act]
            - c.count_cost * new_slot
        )
        ep.prob[rows], ep.margin[rows] = prob, margin
        ep.steps[rows] += 1
        for i, p in zip(rows, prob, strict=True):
            ep.probs[i].append(float(p))
        ep.active[rows] = ~flipped & (ep.steps[rows] < c.max_steps)
        if ep.active.any():  # nothing left to try ends the episode too
            ep.active &= self.masks(ep).any(axis=1)
        return rewards


def margin_scale(prob0: np.ndarray, threshold: float) -> float:
    """Median |logit(p) - logit(threshold)| over positive decisions (1.0 when there are none or it is ~0).

    Puts a confident model (margins of several logits) and a near-chance one (margins of 1e-4) on the same reward
    scale."""
    pos = prob0 >= threshold
    if not pos.any():
        return 1.0
    scale = float(np.median(np.abs(logit(prob0[pos]) - logit(threshold))))
    return scale if scale > 1e-12 else 1.0
