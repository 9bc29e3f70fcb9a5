"""DRIL: weighted Ward, the BIC of a partition, two-step clustering (vlm_ecg.two_step) and the stage schedule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.cluster.hierarchy import cut_tree, linkage
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.cluster import AgglomerativeClustering
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from vlm_ecg.dril import DrilSchedule
from vlm_ecg.two_step import TwoStepClustering, partition_bic, weighted_ward


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Four separated clusters of unequal size in 12 correlated features (units differ per feature)."""
    X, y = make_blobs(n_samples=[700, 450, 250, 100], n_features=12, cluster_std=1.5, random_state=3)
    mix = np.eye(12) + 0.3 * np.random.default_rng(0).normal(size=(12, 12))
    return X @ mix * np.linspace(0.01, 100, 12), y


def test_weighted_ward_with_unit_weights_matches_scipy_ward():
    points = np.random.default_rng(1).normal(size=(60, 5))
    ours = weighted_ward(points, np.ones(60), max_clusters=10)
    theirs = cut_tree(linkage(points, method="ward"), n_clusters=list(range(1, 11)))
    assert sorted(ours) == list(range(1, 11))
    for k in range(1, 11):
        assert adjusted_rand_score(theirs[:, k - 1], ours[k]) == pytest.approx(1.0), k


def test_weighted_ward_equals_ward_on_replicated_points():
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(25, 3))
    weights = rng.integers(1, 6, size=25)
    replicated = np.repeat(centers, weights, axis=0)
    owner = np.repeat(np.arange(25), weights)
    ours = weighted_ward(centers, weights, max_clusters=6)
    for k in range(1, 7):
        theirs = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(replicated)
        assert adjusted_rand_score(theirs, ours[k][owner]) == pytest.approx(1.0), k


def test_partition_bic_matches_explicit_gaussian_likelihood():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 2.0]])
    labels = (X[:, 0] > 0).astype(int)
    n, d = X.shape
    floor = 1e-3 * X.var(axis=0)
    # diag: each cluster its own diagonal Gaussian at the ML estimate (+ floor), plus the mixing weights
    loglik = 0.0
    for g in (0, 1):
        xg = X[labels == g]
        var = xg.var(axis=0) + floor
        loglik += len(xg) * np.log(len(xg) / n) + multivariate_normal(xg.mean(0), np.diag(var)).logpdf(xg).sum()
    assert partition_bic(X, labels, "diag") == pytest.approx(-2 * loglik + (2 * 2 * d + 1) * np.log(n))
    # tied: one pooled covariance
    means = np.stack([X[labels == g].mean(0) for g in (0, 1)])
    resid = X - means[labels]
    cov = resid.T @ resid / n + np.diag(floor)
    loglik = sum(
        (labels == g).sum() * np.log((labels == g).sum() / n)
        + multivariate_normal(means[g], cov).logpdf(X[labels == g]).sum()
        for g in (0, 1)
    )
    p = 2 * d + d * (d + 1) // 2 + 1
    assert partition_bic(X, labels, "tied") == pytest.approx(-2 * loglik + p * np.log(n))
    with pytest.raises(ValueError, match="covariance_type"):
        partition_bic(X, labels, "spherical")


def test_two_step_recovers_blobs_and_is_deterministic(blobs):
    X, y = blobs
    model = TwoStepClustering(random_state=0).fit(X)
    assert model.n_clusters_ == 4
    assert adjusted_rand_score(y, model.labels_) > 0.95
    assert model.min_leaves <= model.n_leaves_ <= model.max_leaves  # automatic threshold
    assert np.all(np.diff(np.bincount(model.labels_)) <= 0)  # numbered by decreasing size
    assert min(model.bic_, key=model.bic_.get) == 4 and sorted(model.bic_) == list(range(1, 16))
    assert np.array_equal(TwoStepClustering(random_state=0).fit(X).labels_, model.labels_)
    assert np.array_equal(model.predict(X), model.labels_)
    assert model.cluster_centers_.shape == (4, 12)
    # another insertion order gives the same clusters on data this clear
    assert adjusted_rand_score(model.labels_, TwoStepClustering(random_state=7).fit(X).labels_) > 0.95


def test_two_step_finds_one_cluster_in_unstructured_data():
    X = np.random.default_rng(6).normal(size=(1500, 10))
    assert TwoStepClustering().fit(X).n_clusters_ == 1


def test_two_step_predicts_new_samples_and_follows_sklearn_contract(blobs):
    X, y = blobs
    model = TwoStepClustering(max_clusters=6, threshold=None).fit(X[::2])
    assert adjusted_rand_score(y[1::2], model.predict(X[1::2])) > 0.95
    cloned = clone(model)
    assert cloned.get_params() == model.get_params() and not hasattr(cloned, "labels_")
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :5])


def test_two_step_fixed_threshold_nan_and_bad_input(blobs):
    X, _ = blobs
    model = TwoStepClustering(threshold=50.0, standardize=False).fit(X)
    assert model.threshold_ == 50.0 and model.n_leaves_ >= 1
    Xn = X.copy()
    Xn[::10, 3] = np.nan  # failed measurements are filled with the training median
    filled = TwoStepClustering().fit(Xn)
    assert filled.fill_values_[3] == pytest.approx(np.nanmedian(Xn[:, 3]))
    assert np.isfinite(filled.predict(Xn)).all()
    Xi = X.copy()
    Xi[0, 1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        TwoStepClustering().fit(Xi)
    with pytest.raises(ValueError, match="2-D"):
        TwoStepClustering().fit(X[:, 0])
    assert TwoStepClustering(max_clusters=3).fit(X[:5]).n_clusters_ <= 3  # fewer samples than leaves


def _cohort(blobs):
    """Blobs as the majority (y=0), a separate minority cloud (y=1) near blob 3, a few unknowns (y=-1)."""
    X, subtype = blobs
    rng = np.random.default_rng(5)
    minority = X[subtype == 3][:60] + rng.normal(scale=0.1, size=(60, X.shape[1])) * X.std(0)
    unknown = X[:10] * 1.01
    features = np.vstack([X, minority, unknown])
    y = np.concatenate([np.zeros(len(X), int), np.ones(60, int), -np.ones(10, int)])
    subtypes = np.concatenate([subtype.astype(str), ["omi"] * 60, ["?"] * 10])
    return features, y, subtypes


@pytest.mark.parametrize("order", ["largest", "nearest", "random"])
def test_dril_stages(blobs, order):
    X, y, subtypes = _cohort(blobs)
    sched = DrilSchedule(order=order, replay_fraction=0.25, random_state=1).fit(X, y)
    k = sched.clusterer_.n_clusters_
    assert k == 4 and len(sched.stages_) == k + 1
    assert sorted(sched.order_) == list(range(k))
    sizes = np.bincount(sched.subgroups_[y == 0])
    minority, unknown = set(np.flatnonzero(y == 1)), set(np.flatnonzero(y == -1))
    for stage, idx in enumerate(sched.stages_[:-1]):
        members = set(idx)
        assert minority <= members and not members & unknown
        assert set(np.flatnonzero(sched.subgroups_ == sched.order_[stage])) <= members
        expected = len(minority) + sizes[sched.order_[stage]]
        expected += sum(math.ceil(0.25 * sizes[g]) for g in sched.order_[:stage])
        assert len(idx) == len(members) == expected
        later = set(np.flatnonzero(np.isin(sched.subgroups_, sched.order_[stage + 1 :])))
        assert not members & later
    assert np.array_equal(sched.stages_[-1], np.arange(len(X)))
    if order == "largest":
        assert list(sizes[sched.order_]) == sorted(sizes, reverse=True)
    if order == "nearest":  # the minority was placed beside true blob 3 -> its subgroup comes first
        first = sched.subgroups_ == sched.order_[0]
        assert set(subtypes[first]) == {"3"}
    again = DrilSchedule(order=order, replay_fraction=0.25, random_state=1).fit(X, y)
    assert all(np.array_equal(a, b) for a, b in zip(again.stages_, sched.stages_, strict=True))


def test_dril_report_is_json_and_scores_purity(blobs):
    X, y, subtypes = _cohort(blobs)
    names = [f"feat_{i}" for i in range(X.shape[1])]
    sched = DrilSchedule(replay_fraction=0.0).fit(X, y, feature_names=names)
    rep = json.loads(json.dumps(sched.report(subtypes=subtypes)))
    assert rep["n_clusters"] == 4 and rep["n_majority"] == 1500 and rep["n_minority"] == 60
    assert sum(rep["cluster_sizes"]) == 1500
    assert list(rep["feature_means"][0]) == names
    assert rep["adjusted_rand_index"] > 0.95 and rep["purity"] > 0.97
    assert set(rep["subtype_recovery"]) == {"0", "1", "2", "3"} and min(rep["subtype_recovery"].values()) > 0.95
    assert sum(sum(row.values()) for row in rep["subtype_counts"]) == 1500
    assert [b["k"] for b in rep["bic"]] == list(range(1, 16))
    assert rep["stage_sizes"] == [len(s) for s in sched.stages_]
    # replay 0: each stage is exactly minority + its subgroup
    assert rep["stage_sizes"][:-1] == [60 + rep["cluster_sizes"][g] for g in rep["stage_order"]]
    assert np.array_equal(sched.predict(X[y == 0]), sched.subgroups_[y == 0])


def test_dril_bad_arguments(blobs):
    X, y, _ = _cohort(blobs)
    with pytest.raises(ValueError, match="order"):
        DrilSchedule(order="hardest").fit(X, y)
    with pytest.raises(ValueError, match="replay_fraction"):
        DrilSchedule(replay_fraction=1.5).fit(X, y)
    with pytest.raises(ValueError, match="minority"):
        DrilSchedule(order="nearest").fit(X, np.zeros(len(X), int))
    with pytest.raises(ValueError, match="feature names"):
        DrilSchedule().fit(X, y, feature_names=["a"])
    with pytest.raises(ValueError, match="subtypes"):
        DrilSchedule().fit(X, y).report(subtypes=["a"])


def test_dril_recovers_synthetic_majority_subtypes():
    """DRIL on wave measurements of the synthetic cohort's negatives finds its background subtypes.

    Thresholds from measurements (700 records, DRIL seed 0, cohort seeds 0-5): ARI 0.52-0.77, purity
    0.946-0.984, worst per-subtype recovery 0.75 (seeds 0, 2, 5). BIC picks 11-15 clusters for the 7
    subtypes: "normal" (~47 % of negatives) splits by electrical axis, which costs ARI but not purity (on
    2 800 records Ward with the true k = 7 reaches ARI 0.90; argmin-BIC two-step 0.53-0.68, purity 0.94-0.96).
    """
    from vlm_ecg.measure import feature_names, feature_vector
    from vlm_ecg.synth import make_cohort

    records = make_cohort(n=700, seed=0)
    X = np.stack([feature_vector(r.ecg) for r in records])
    y = np.array([r.labels.triage for r in records])
    subtypes = [r.labels.subtype for r in records]
    rep = DrilSchedule(random_state=0).fit(X, y, feature_names=feature_names()).report(subtypes=subtypes)
    assert rep["adjusted_rand_index"] > 0.40
    assert rep["purity"] > 0.90
    assert min(rep["subtype_recovery"].values()) > 0.60, rep["subtype_recovery"]
    assert len(rep["subtype_recovery"]) == 7  # every background subtype occurs among the negatives
