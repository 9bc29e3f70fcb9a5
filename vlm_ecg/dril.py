"""DRIL: clustering-based incremental learning for the imbalanced triage problem.

DRIL is our reading of Liu, Du, Yin, Zhang and Wang, "Clustering-based incremental learning for imbalanced
data classification", Knowledge-Based Systems 292 (2024) 111612. Only the abstract is public: two-step
clustering partitions the data into "similar and representative sub-datasets" which incremental learning
then acquires gradually. What follows is an **interpretation** of that abstract, not a reproduction:

1. Only the majority class (triage negatives) is clustered, in a feature space the caller chooses (per-lead
   wave measurements from `vlm_ecg.measure`, or frozen-branch embeddings).
2. Clustering is SPSS-style two-step clustering (`vlm_ecg.two_step.TwoStepClustering`): a BIRCH CF tree
   pre-clusters the samples into leaf subclusters in one pass, then Ward agglomeration of the leaf centroids,
   weighted by leaf sizes, with the number of clusters chosen by BIC.
3. `DrilSchedule` turns the clusters into training stages: stage k holds every minority sample, majority
   subgroup k and a replayed fraction of the earlier subgroups; a final stage holds all data. Each stage is
   therefore far less imbalanced than the whole set, and the model meets the majority's variety gradually.

`DrilSchedule` follows the scikit-learn estimator contract: parameters are stored by ``__init__`` only, fitted
state ends in ``_``, ``get_params`` / ``set_params`` / ``clone`` come from `BaseEstimator`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.validation import check_is_fitted

from .two_step import TwoStepClustering

logger = logging.getLogger(__name__)

__all__ = ["ORDERS", "DrilSchedule", "TwoStepClustering"]

ORDERS = ("largest", "nearest", "random")


class DrilSchedule(BaseEstimator):
    """Cluster the majority class and build DRIL's stages of training indices.

    Stage k (k = 0 .. K-1, clusters taken in `order`) holds every minority sample, every sample of majority
    subgroup ``order[k]`` and, from each earlier subgroup, a seeded random ``ceil(replay_fraction * size)``
    of its samples. A final stage with all N samples is appended (`final_stage`), so the model ends on the
    true class balance. Samples that are neither majority nor minority (e.g. unknown triage, -1) only
    appear in the final stage. Orders:

    - ``"largest"``: biggest subgroup first (the most typical negatives first);
    - ``"nearest"``: subgroup whose centroid is nearest (Euclidean, in the clustering's standardised space)
      to the minority centroid first: the hardest negatives first;
    - ``"random"``: a seeded permutation.

    Args:
        clusterer: the majority-class clusterer (cloned in `fit`); default `TwoStepClustering` seeded with
            `random_state`.
        order: stage order, one of ``"largest" | "nearest" | "random"``.
        replay_fraction: fraction of each earlier subgroup replayed in later stages, in [0, 1].
        final_stage: append a stage with all samples.
        majority_label / minority_label: values of y for the negatives (clustered) and the positives.
        random_state: seed of replay sampling and of the random order.

    Attributes:
        clusterer_: the fitted clusterer.
        majority_index_ / minority_index_: indices into X of the two classes.
        subgroups_: (N,) subgroup of each sample, -1 for non-majority samples.
        order_: list of subgroup ids in stage order.
        stages_: list of sorted int64 index arrays into X, one per stage.
    """

    def __init__(
        self,
        clusterer: TwoStepClustering | None = None,
        order: str = "nearest",
        replay_fraction: float = 0.2,
        final_stage: bool = True,
        majority_label: int = 0,
        minority_label: int = 1,
        random_state: int = 0,
    ):
        self.clusterer = clusterer
        self.order = order
        self.replay_fraction = replay_fraction
        self.final_stage = final_stage
        self.majority_label = majority_label
        self.minority_label = minority_label
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, feature_names: Sequence[str] | None = None) -> DrilSchedule:
        """Cluster the majority rows of X and build `stages_`.

        Args:
            X: (N, d) features of all samples (minority rows are used only by the ``"nearest"`` order).
            y: (N,) class labels.
            feature_names: d names for the report (default ``f0 .. f{d-1}``).
        """
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        if not 0.0 <= self.replay_fraction <= 1.0:
            raise ValueError(f"replay_fraction must lie in [0, 1], got {self.replay_fraction}")
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or y.shape != (len(X),):
            raise ValueError(f"X must be (N, d) and y (N,), got {X.shape} and {y.shape}")
        if feature_names is not None and len(feature_names) != X.shape[1]:
            raise ValueError(f"{len(feature_names)} feature names for {X.shape[1]} features")
        self.feature_names_ = (
            list(feature_names) if feature_names is not None else [f"f{i}" for i in range(X.shape[1])]
        )
        self.majority_index_ = np.flatnonzero(y == self.majority_label)
        self.minority_index_ = np.flatnonzero(y == self.minority_label)
        if len(self.majority_index_) < 2:
            raise ValueError(f"need at least 2 majority samples (y == {self.majority_label}) to cluster")
        if self.order == "nearest" and len(self.minority_index_) == 0:
            raise ValueError(f'order="nearest" needs minority samples (y == {self.minority_label})')
        base = self.clusterer if self.clusterer is not None else TwoStepClustering(random_state=self.random_state)
        self.clusterer_ = clone(base).fit(X[self.majority_index_])
        k = self.clusterer_.n_clusters_
        self.subgroups_ = np.full(len(X), -1, dtype=np.int64)
        self.subgroups_[self.majority_index_] = self.clusterer_.labels_
        self.order_ = self._stage_order(X)
        members = [self.majority_index_[self.clusterer_.labels_ == c] for c in range(k)]
        self.stages_ = []
        for stage, cluster in enumerate(self.order_):
            rng = np.random.default_rng([self.random_state, stage])
            parts = [self.minority_index_, members[cluster]]
            for earlier in self.order_[:stage]:
                n_replay = int(np.ceil(self.replay_fraction * len(members[earlier])))
                parts.append(rng.choice(members[earlier], size=n_replay, replace=False))
            self.stages_.append(np.sort(np.concatenate(parts)).astype(np.int64))
        if self.final_stage and (len(self.stages_[-1]) < len(X)):
            self.stages_.append(np.arange(len(X), dtype=np.int64))
        logger.info(
            "DRIL: %d majority subgroups, %d stages of %s samples (order %s)",
            k,
            len(self.stages_),
            [len(s) for s in self.stages_],
            self.order,
        )
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Majority subgroup of each row of X (e.g. to report validation metrics per subgroup)."""
        check_is_fitted(self, "stages_")
        return self.clusterer_.predict(X)

    def report(self, subtypes: Sequence[str] | None = None) -> dict:
        """A JSON-serialisable summary of the clustering and the stages.

        Args:
            subtypes: optional (N,) true subtypes aligned with the X given to `fit`; adds, on the majority
                samples, the purity and adjusted Rand index of the subgroups against them, each subtype's
                recovery (share of its samples in subgroups where it is the most common subtype) and the
                table of subtype counts per subgroup.
        """
        check_is_fitted(self, "stages_")
        c = self.clusterer_
        labels = c.labels_
        out = {
            "n_clusters": int(c.n_clusters_),
            "n_majority": int(len(self.majority_index_)),
            "n_minority": int(len(self.minority_index_)),
            "cluster_sizes": np.bincount(labels, minlength=c.n_clusters_).tolist(),
            "order": self.order,
            "stage_order": [int(g) for g in self.order_],
            "replay_fraction": float(self.replay_fraction),
            "stage_sizes": [int(len(s)) for s in self.stages_],
            "threshold": float(c.threshold_),
            "n_leaves": int(c.n_leaves_),
            "bic": [{"k": int(k), "bic": float(v)} for k, v in sorted(c.bic_.items())],
            "feature_means": [
                {name: float(v) for name, v in zip(self.feature_names_, center, strict=True)}
                for center in c.cluster_centers_
            ],
        }
        if subtypes is not None:
            subtypes = np.asarray(subtypes, dtype=str)
            if len(subtypes) != len(self.subgroups_):
                raise ValueError(f"{len(subtypes)} subtypes for {len(self.subgroups_)} samples given to fit")
            true = subtypes[self.majority_index_]
            names, true_idx = np.unique(true, return_inverse=True)
            table = np.zeros((c.n_clusters_, len(names)), dtype=np.int64)
            np.add.at(table, (labels, true_idx), 1)
            out["purity"] = float(table.max(axis=1).sum() / len(labels))
            out["adjusted_rand_index"] = float(adjusted_rand_score(true_idx, labels))
            # share of each subtype lying in subgroups where it is the most common subtype: 1.0 means the
            # subtype owns its subgroup(s), even when it is split over several (which lowers the ARI)
            owner = table.argmax(axis=1)
            out["subtype_recovery"] = {
                str(n): float(table[owner == j, j].sum() / table[:, j].sum()) for j, n in enumerate(names)
            }
            out["subtype_counts"] = [{str(n): int(v) for n, v in zip(names, row, strict=True) if v} for row in table]
        return out

    def _stage_order(self, X: np.ndarray) -> list[int]:
        c = self.clusterer_
        sizes = np.bincount(c.labels_, minlength=c.n_clusters_)
        if self.order == "largest":
            return [int(g) for g in np.argsort(-sizes, kind="stable")]
        if self.order == "random":
            return [int(g) for g in np.random.default_rng(self.random_state).permutation(c.n_clusters_)]
        z_major = c.transform_standardized(X[self.majority_index_])
        z_minor = c.transform_standardized(X[self.minority_index_]).mean(axis=0)
        centers = np.stack([z_major[c.labels_ == g].mean(axis=0) for g in range(c.n_clusters_)])
        return [int(g) for g in np.argsort(np.linalg.norm(centers - z_minor, axis=1), kind="stable")]
