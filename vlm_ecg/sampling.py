"""Plain batch sampling for the baselines: seeded shuffling, optional random oversampling, DDP shards, resume.

`ResumableBatchSampler` is the contract every batch sampler of a run keeps (seeded epoch plans, DDP shards, exact
resume). The confounder-stratified sampler (`vlm_ecg.causal.StratifiedBalancedBatchSampler`) is the method;
`ShuffledBatchSampler` is what it is compared against (``sampler=random``; ``imbalance=oversample`` adds random
oversampling of positives).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """The contract every vlm_ecg batch sampler keeps; subclasses only say how an epoch's batches are planned.

    The plan of an epoch depends on (seed, epoch) only, so it can be rebuilt after a restart; ``state_dict`` /
    ``load_state_dict`` carry the epoch and the number of batches already consumed, and iteration continues
    exactly there. A DataLoader prefetches ahead of the training step, so the loop passes the count it actually
    consumed: ``sampler.state_dict(batches_consumed=step_in_epoch)``. `set_epoch` with a new epoch restarts at its
    first batch (with the current epoch it keeps the position, so a resumed loop may call it again).

    Subclasses set ``seed``, ``num_replicas``, ``rank``, ``drop_last``, ``batch_size`` and ``_batches_per_rank``
    and implement ``_epoch_batches(rng)`` (all ranks' batches, before sharding).
    """

    seed: int
    batch_size: int
    num_replicas: int
    rank: int
    drop_last: bool
    _batches_per_rank: int
    epoch: int = 0
    _position: int = 0

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return self._batches_per_rank

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._position = epoch, 0

    def state_dict(self, batches_consumed: int | None = None) -> dict:
        """Plain dict for a checkpoint; `batches_consumed` overrides the count of batches yielded so far."""
        position = self._position if batches_consumed is None else int(batches_consumed)
        return {"epoch": self.epoch, "position": position, "seed": self.seed, "batches_per_rank": len(self)}

    def load_state_dict(self, state: Mapping) -> None:
        if state.get("seed", self.seed) != self.seed or state.get("batches_per_rank", len(self)) != len(self):
            raise ValueError(
                f"sampler state (seed {state.get('seed')}, {state.get('batches_per_rank')} batches) does not match "
                f"this sampler (seed {self.seed}, {len(self)} batches): different data, stage or world size"
            )
        if not 0 <= state["position"] <= len(self):
            raise ValueError(f"position {state['position']} outside 0..{len(self)}")
        self.epoch, self._position = int(state["epoch"]), int(state["position"])

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._plan(self.epoch)
        while self._position < len(batches):
            batch = batches[self._position]
            self._position += 1
            yield batch
        self._position = 0

    def _epoch_batches(self, rng: np.random.Generator) -> list[list[int]]:
        raise TypeError(f"{type(self).__name__} must define _epoch_batches")

    def _plan(self, epoch: int) -> list[list[int]]:
        """This rank's batches of `epoch`: the epoch's batches, the ragged tail dropped if asked, then dealt
        round-robin, padded by repeating the first batches so every rank gets the same count."""
        batches = self._epoch_batches(np.random.default_rng([self.seed, epoch]))
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        n_total = self._batches_per_rank * self.num_replicas
        batches = (batches * (-(-n_total // len(batches))))[:n_total]
        return batches[self.rank :: self.num_replicas]


class ShuffledBatchSampler(ResumableBatchSampler):
    """Seeded shuffled batches over a subset, optionally oversampling the minority class to balance.

    Args:
        indices: row indices to sample from (a DRIL stage, or all rows).
        batch_size: samples per batch.
        labels: (N,) triage labels of the whole data set; needed for `oversample`.
        oversample: repeat (by whole shuffled passes) the positives until they match the negatives in number:
            the "random oversampling" baseline of imbalanced learning.
        seed: the epoch plan depends on (seed, epoch) only.
        num_replicas / rank: DDP world size and this process's rank; batches are dealt round-robin, padded by
            repeating the first batches so every rank gets the same count.
        drop_last: drop the last, smaller batch.
    """

    def __init__(
        self,
        indices: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        labels: Sequence[int] | np.ndarray | None = None,
        oversample: bool = False,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ):
        self.indices = np.asarray(indices, dtype=np.int64)
        if batch_size < 1 or not len(self.indices):
            raise ValueError(f"need batch_size >= 1 and some indices, got {batch_size} and {len(self.indices)}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must lie in 0..num_replicas-1, got rank {rank} of {num_replicas}")
        if oversample and labels is None:
            raise ValueError("oversample needs labels")
        self.batch_size, self.seed, self.drop_last = batch_size, seed, drop_last
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self._position = 0, 0
        self._pos = self._neg = None
        n = len(self.indices)
        if oversample:
            y = np.asarray(labels)[self.indices]
            self._pos, self._neg = self.indices[y == 1], self.indices[y != 1]
            if len(self._pos) and len(self._neg):
                n = len(self._neg) + max(len(self._neg), len(self._pos))
        n_batches = n // batch_size if drop_last else -(-n // batch_size)
        self._batches_per_rank = -(-n_batches // num_replicas)
        if n_batches == 0:
            raise ValueError(f"{n} samples make no batch of {batch_size}")

    def _epoch_batches(self, rng: np.random.Generator) -> list[list[int]]:
        if self._pos is not None and len(self._pos) and len(self._neg):
            need = max(len(self._neg), len(self._pos))
            passes = [rng.permutation(self._pos) for _ in range(-(-need // len(self._pos)))]
            order = rng.permutation(np.concatenate([self._neg, np.concatenate(passes)[:need]]))
        else:
            order = rng.permutation(self.indices)
        return [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
