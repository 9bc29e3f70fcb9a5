"""Confounder strata, P(z), back-door adjustment and the within-stratum balanced batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from vlm_ecg.causal import (
    StrataConfig,
    StratifiedBalancedBatchSampler,
    adjust_prevalence,
    assign_strata,
    backdoor_adjust,
    estimate_prior,
    num_strata,
    strata_from_columns,
    strata_names,
)

NAN = float("nan")


def test_assign_strata_by_hand():
    config = StrataConfig()  # age <50 / 50-65 / >=65 (+?), M / F (+?), any history -/+ (+?)
    age = [30, 50, 64.9, 65, 90, NAN, 250, -1]
    sex = ["M", "F", "F", "M", "", "F", "M", "M"]
    hypertension = [0, 1, 0, 0, 0, 0, 0, 0]
    diabetes = [0, -1, -1, 0, 0, 0, 0, 0]
    prior_mi = [0, 0, 0, 1, -1, 0, 0, 0]
    codes = assign_strata(age, sex, hypertension, diabetes, prior_mi, config)
    names = [strata_names(config)[c] for c in codes]
    assert names == [
        "age<50|M|hx-",
        "age 50-65|F|hx+",
        "age 50-65|F|hx?",  # no "yes" but one field unknown: history unknown
        "age>=65|M|hx+",
        "age>=65|sex?|hx?",
        "age?|F|hx-",
        "age>=65|M|hx-",  # beyond the last edge: last band
        "age<50|M|hx-",
    ]
    assert codes.dtype == np.int64


@pytest.mark.parametrize(
    "config, expected",
    [
        (StrataConfig(), 4 * 3 * 3),
        (StrataConfig(unknown="error"), 3 * 2 * 2),
        (StrataConfig(history="each", unknown="error"), 3 * 2 * 8),
        (StrataConfig(age_bands_years=[0, 200], use_sex=False, history="none"), 1),
        (StrataConfig(age_bands_years=[0, 40, 60, 80, 200], use_sex=False, history="none", unknown="error"), 4),
    ],
)
def test_num_strata_matches_names_and_codes(config, expected):
    assert num_strata(config) == len(strata_names(config)) == expected
    assert len(set(strata_names(config))) == expected
    rng = np.random.default_rng(0)
    n = 500
    known = config.unknown == "error"
    codes = assign_strata(
        rng.uniform(20, 95, n) if known else np.where(rng.random(n) < 0.1, NAN, rng.uniform(20, 95, n)),
        rng.choice(["M", "F"] if known else ["M", "F", ""], n),
        *(rng.choice([0, 1] if known else [-1, 0, 1], n) for _ in range(3)),
        config,
    )
    assert codes.min() >= 0 and codes.max() < expected
    if expected > 1:
        assert len(np.unique(codes)) > 1


def test_strata_errors():
    with pytest.raises(ValueError, match="unknown sex"):
        assign_strata([60], [""], [0], [0], [0], StrataConfig(unknown="error"))
    with pytest.raises(ValueError, match="unknown age"):
        assign_strata([NAN], ["M"], [0], [0], [0], StrataConfig(unknown="error"))
    with pytest.raises(ValueError, match="sex must be"):
        assign_strata([60], ["male"], [0], [0], [0], StrataConfig())
    with pytest.raises(ValueError, match="diabetes"):
        assign_strata([60], ["M"], [0], [2], [0], StrataConfig())
    with pytest.raises(ValueError, match="shape"):
        assign_strata([60, 70], ["M"], [0, 0], [0, 0], [0, 0], StrataConfig())
    with pytest.raises(ValueError, match="increasing"):
        StrataConfig(age_bands_years=[0, 65, 50])
    with pytest.raises(ValueError, match="history"):
        StrataConfig(history="all")


def test_strata_from_columns_dataset_and_dict():
    import datasets

    columns = {
        "age": [40.0, 70.0],
        "sex": ["F", "M"],
        "hypertension": [0, 1],
        "diabetes": [0, 0],
        "prior_mi": [0, 0],
    }
    config = StrataConfig()
    expected = assign_strata(*columns.values(), config)
    assert np.array_equal(strata_from_columns(columns, config), expected)
    assert np.array_equal(strata_from_columns(datasets.Dataset.from_dict(columns), config), expected)
    with pytest.raises(ValueError, match="prior_mi"):
        strata_from_columns({k: v for k, v in columns.items() if k != "prior_mi"}, config)


def test_estimate_prior():
    strata = np.array([0, 0, 1, 3, 3, 3])
    prior = estimate_prior(strata, 5, smoothing=0.0)
    assert np.allclose(prior, [2 / 6, 1 / 6, 0, 3 / 6, 0])
    smoothed = estimate_prior(strata, 5, smoothing=1.0)
    assert smoothed.sum() == pytest.approx(1.0) and smoothed.min() == pytest.approx(1 / 11)
    with pytest.raises(ValueError, match="0..4"):
        estimate_prior([5], 5)


def test_backdoor_adjust_equals_explicit_sum():
    rng = np.random.default_rng(1)
    prob = rng.random((7, 4))
    prior = estimate_prior(rng.integers(0, 4, 100), 4)
    explicit = [sum(prob[n, z] * prior[z] for z in range(4)) for n in range(7)]
    assert np.allclose(backdoor_adjust(prob, prior), explicit)
    flat = np.repeat(prob[:, :1], 4, axis=1)  # a model that ignores z is left unchanged
    assert np.allclose(backdoor_adjust(flat, prior), prob[:, 0])
    with pytest.raises(ValueError, match="sum to 1"):
        backdoor_adjust(prob, prior * 2)
    with pytest.raises(ValueError, match="shape|prior"):
        backdoor_adjust(prob, prior[:3])
    with pytest.raises(ValueError, match="sigmoid"):
        backdoor_adjust(prob * 3 - 1, prior)


def test_adjust_prevalence():
    p = np.array([0.1, 0.5, 0.9])
    assert np.allclose(adjust_prevalence(p, 0.5, 0.5), p)
    assert adjust_prevalence(0.5, 0.5, 0.1) == pytest.approx(0.1)  # uninformative x -> the new prior
    assert np.all(np.diff(adjust_prevalence(p, 0.5, 0.05)) > 0)
    assert np.allclose(adjust_prevalence(adjust_prevalence(p, 0.5, 0.2), 0.2, 0.5), p)
    with pytest.raises(ValueError, match="to_prevalence"):
        adjust_prevalence(p, 0.5, 1.0)


@pytest.fixture(scope="module")
def confounded() -> tuple[np.ndarray, np.ndarray]:
    """2 000 samples in 6 strata whose prevalence ranges from 5 % to 60 % (z strongly predicts y)."""
    rng = np.random.default_rng(2)
    strata = rng.integers(0, 6, 2000)
    prevalence = np.array([0.05, 0.1, 0.2, 0.3, 0.45, 0.6])
    labels = (rng.random(2000) < prevalence[strata]).astype(np.int64)
    labels[rng.choice(2000, 50, replace=False)] = -1  # unknown triage
    return labels, strata


def _stratum_label_table(batch, labels, strata):
    table = np.zeros((6, 2), dtype=int)
    np.add.at(table, (strata[batch], labels[batch]), 1)
    return table


@pytest.mark.parametrize("ratio", [1, 3])
def test_batches_balanced_within_strata(confounded, ratio):
    labels, strata = confounded
    sampler = StratifiedBalancedBatchSampler(labels, strata, batch_size=32, negatives_per_positive=ratio, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        table = _stratum_label_table(batch, labels, strata)
        assert np.array_equal(table[:, 0], ratio * table[:, 1])  # r negatives per positive in every stratum
    full = [b for b in batches if len(b) == 32]
    assert len(full) >= len(batches) - 1
    # the within-batch association of stratum and label is gone; in the raw data it is strong
    flat = np.concatenate(batches)
    assert (labels[flat] >= 0).all()
    batch_prev = [labels[flat][strata[flat] == s].mean() for s in range(6)]
    assert np.allclose(batch_prev, 1 / (1 + ratio))
    known = labels >= 0
    raw_prev = [labels[known & (strata == s)].mean() for s in range(6)]
    assert max(raw_prev) - min(raw_prev) > 0.4
    # epoch length: about the number of labelled samples, each stratum about its own size
    assert abs(len(flat) - known.sum()) <= 6 * (1 + ratio)
    assert np.allclose(np.bincount(strata[flat]), np.bincount(strata[known]), atol=1 + ratio)
    # each class of each stratum is drawn by whole shuffled passes: oversampled -> every sample seen,
    # undersampled -> no sample repeated
    for s in range(6):
        for cls in (0, 1):
            pool = np.flatnonzero((strata == s) & (labels == cls))
            drawn = flat[(strata[flat] == s) & (labels[flat] == cls)]
            if len(drawn) >= len(pool):
                assert set(pool.tolist()) == set(drawn.tolist())
            else:
                assert len(set(drawn.tolist())) == len(drawn)


def test_single_class_strata_and_subsets(confounded):
    labels, strata = confounded
    labels = labels.copy()
    labels[(strata == 0) & (labels == 1)] = 0  # stratum 0 now has no positives
    dropped = StratifiedBalancedBatchSampler(labels, strata, batch_size=16)
    assert dropped.excluded_strata == [0]
    assert not np.isin(np.concatenate(list(dropped)), np.flatnonzero(strata == 0)).any()
    kept = StratifiedBalancedBatchSampler(labels, strata, batch_size=16, single_class_strata="keep")
    assert kept.excluded_strata == [] and np.isin(np.concatenate(list(kept)), np.flatnonzero(strata == 0)).any()
    subset = np.flatnonzero(strata >= 3)[::2]
    staged = StratifiedBalancedBatchSampler(labels, strata, batch_size=16, indices=subset)
    assert set(np.concatenate(list(staged)).tolist()) <= set(subset.tolist())


def test_determinism_and_epochs(confounded):
    labels, strata = confounded

    def epoch(seed, e):
        sampler = StratifiedBalancedBatchSampler(labels, strata, batch_size=16, seed=seed)
        sampler.set_epoch(e)
        return list(sampler)

    assert epoch(0, 1) == epoch(0, 1)
    assert epoch(0, 1) != epoch(0, 2)
    assert epoch(0, 1) != epoch(1, 1)


@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_partition_the_global_batches(confounded, drop_last):
    labels, strata = confounded
    world = 3
    single = StratifiedBalancedBatchSampler(labels, strata, batch_size=16, seed=4, drop_last=drop_last)
    ranks = [
        StratifiedBalancedBatchSampler(
            labels, strata, batch_size=16, seed=4, num_replicas=world, rank=r, drop_last=drop_last
        )
        for r in range(world)
    ]
    for s in (single, *ranks):
        s.set_epoch(5)
    plans = [list(s) for s in ranks]
    assert len({len(p) for p in plans} | {len(s) for s in ranks}) == 1  # same number of batches on every rank
    interleaved = [plans[b % world][b // world] for b in range(world * len(plans[0]))]
    global_batches = list(single)
    if drop_last:  # rank r holds global batches r, r + W, ...: disjoint shards of one epoch
        assert interleaved == global_batches[: len(interleaved)]
        assert len(global_batches) - len(interleaved) < world
    else:  # every global batch is used; the shortfall is padded with the first batches
        assert interleaved[: len(global_batches)] == global_batches
        assert interleaved[len(global_batches) :] == global_batches[: len(interleaved) - len(global_batches)]


def test_resume_mid_epoch_continues_exactly(confounded):
    labels, strata = confounded

    def make():
        return StratifiedBalancedBatchSampler(labels, strata, batch_size=16, seed=7, num_replicas=2, rank=1)

    reference = make()
    reference.set_epoch(3)
    full_epoch = list(reference)
    reference.set_epoch(4)
    next_epoch = list(reference)

    run = make()
    run.set_epoch(3)
    it = iter(run)
    first = [next(it) for _ in range(5)]
    state = run.state_dict()
    assert state["epoch"] == 3 and state["position"] == 5
    resumed = make()
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # a resumed loop calls set_epoch again: the position is kept
    rest = list(resumed)
    assert first + rest == full_epoch
    resumed.set_epoch(4)
    assert list(resumed) == next_epoch
    # a DataLoader prefetches: the loop states how many batches it consumed
    consumed = make()
    consumed.load_state_dict(run.state_dict(batches_consumed=2))
    consumed.set_epoch(3)
    assert list(consumed) == full_epoch[2:]
    other = StratifiedBalancedBatchSampler(labels, strata, batch_size=16, seed=8)
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict(state)


def test_works_as_dataloader_batch_sampler(confounded):
    labels, strata = confounded
    sampler = StratifiedBalancedBatchSampler(labels, strata, batch_size=8, seed=1)
    dataset = TensorDataset(torch.arange(len(labels)), torch.as_tensor(labels))
    loader = DataLoader(dataset, batch_sampler=sampler)
    got = [idx.tolist() for idx, _ in loader]
    assert len(got) == len(loader) == len(sampler)
    assert got == list(StratifiedBalancedBatchSampler(labels, strata, batch_size=8, seed=1))


def test_sampler_errors(confounded):
    labels, strata = confounded
    with pytest.raises(ValueError, match="multiple"):
        StratifiedBalancedBatchSampler(labels, strata, batch_size=15)
    with pytest.raises(ValueError, match="multiple"):
        StratifiedBalancedBatchSampler(labels, strata, batch_size=6, negatives_per_positive=3)
    with pytest.raises(ValueError, match="rank"):
        StratifiedBalancedBatchSampler(labels, strata, batch_size=16, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="alike"):
        StratifiedBalancedBatchSampler(labels, strata[:10], batch_size=16)
    with pytest.raises(ValueError, match="no batch"):
        StratifiedBalancedBatchSampler(labels, strata, batch_size=16, indices=[0, 1], drop_last=True)
