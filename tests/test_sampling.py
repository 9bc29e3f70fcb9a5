"""The baselines' batch sampler: seeded plans, random oversampling, DDP shards and exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_ecg.sampling import ShuffledBatchSampler

LABELS = np.array([1] * 10 + [0] * 90)


def test_plain_epoch_covers_each_index_once_and_depends_on_seed_and_epoch():
    sampler = ShuffledBatchSampler(np.arange(100), 16, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 7
    assert sorted(i for b in batches for i in b) == list(range(100))
    assert batches == list(ShuffledBatchSampler(np.arange(100), 16, seed=3))
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_oversampling_balances_the_classes_without_repeating_before_a_full_pass():
    sampler = ShuffledBatchSampler(np.arange(100), 20, labels=LABELS, oversample=True, seed=0)
    seen = np.array([i for b in sampler for i in b])
    assert len(seen) == 180 and LABELS[seen].sum() == 90  # 90 negatives, 90 positive draws
    assert np.bincount(seen[LABELS[seen] == 1], minlength=10)[:10].tolist() == [9] * 10  # whole passes
    with pytest.raises(ValueError, match="labels"):
        ShuffledBatchSampler(np.arange(100), 20, oversample=True)


def test_ranks_get_disjoint_equal_shards():
    shards = [list(ShuffledBatchSampler(np.arange(96), 8, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 6
    assert not {i for b in shards[0] for i in b} & {i for b in shards[1] for i in b}


def test_resume_mid_epoch_continues_exactly():
    full = list(ShuffledBatchSampler(np.arange(100), 10, seed=5))
    sampler = ShuffledBatchSampler(np.arange(100), 10, seed=5)
    state = sampler.state_dict(batches_consumed=4)
    resumed = ShuffledBatchSampler(np.arange(100), 10, seed=5)
    resumed.load_state_dict(state)
    assert list(resumed) == full[4:]
    with pytest.raises(ValueError, match="does not match"):
        ShuffledBatchSampler(np.arange(100), 10, seed=6).load_state_dict(state)
