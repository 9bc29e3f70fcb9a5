"""Metrics with known answers, degenerate inputs, subgroup gaps, JSON output and plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from vlm_ecg.fairness import subgroup_metrics
from vlm_ecg.metric_plots import plot_confusion_matrix, plot_evaluation, plot_roc
from vlm_ecg.metrics import (
    calibration_bins,
    culprit_metrics,
    evaluate_predictions,
    expected_calibration_error,
    save_metrics,
    sensitivity_at_specificity,
    stenosis_metrics,
    to_jsonable,
    triage_metrics,
)


def test_hand_computable_case():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = triage_metrics(y, p, n_boot=0)
    assert m["auroc"]["value"] == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ranked right
    assert m["auprc"]["value"] == pytest.approx((1 + 2 / 3) / 2)  # precision 1 at recall .5, 2/3 at recall 1
    assert m["auroc"]["value"] == pytest.approx(roc_auc_score(y, p))
    assert m["auprc"]["value"] == pytest.approx(average_precision_score(y, p))
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["at_threshold"] == {"threshold": 0.5, "sensitivity": 0.5, "specificity": 1.0, "ppv": 1.0, "npv": 2 / 3}
    assert "ci_low" not in m["auroc"]  # n_boot=0: no CIs


def test_sensitivity_at_specificity_by_hand():
    neg = np.arange(20) / 20  # 0.00 .. 0.95
    pos = np.array([0.97, 0.96, 0.92, 0.91, 0.5, 0.2])
    y = np.r_[np.zeros(20, int), np.ones(6, int)]
    s = np.r_[neg, pos]
    # specificity >= 0.95 allows one false positive (0.95): threshold 0.91 catches 4 positives, 0.90 is a 2nd FP
    assert sensitivity_at_specificity(y, s, 0.95) == (pytest.approx(4 / 6), pytest.approx(0.91))
    # >= 0.90 allows two (0.95, 0.90): still 4, the next positive (0.5) costs 9 more false positives
    assert sensitivity_at_specificity(y, s, 0.90)[0] == pytest.approx(4 / 6)
    assert sensitivity_at_specificity(y, s, 0.5)[0] == pytest.approx(5 / 6)


def test_perfect_and_random_predictors():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.2).astype(int)
    perfect = triage_metrics(y, np.where(y == 1, 0.9, 0.1), n_boot=200)
    for key in ("auroc", "auprc", "sensitivity_at_90_specificity", "sensitivity_at_95_specificity"):
        assert perfect[key]["value"] == 1.0 and perfect[key]["ci_low"] == 1.0
    assert perfect["brier"] == pytest.approx(0.01)
    assert perfect["ece"] == pytest.approx(0.1)  # every bin off by exactly 0.1
    rand = triage_metrics(y, rng.random(2000), n_boot=300, seed=1)
    assert rand["auroc"]["ci_low"] < 0.5 < rand["auroc"]["ci_high"]
    assert rand["auroc"]["ci_high"] - rand["auroc"]["ci_low"] < 0.1
    assert rand["auprc"]["ci_low"] < y.mean() < rand["auprc"]["ci_high"]  # chance AP = prevalence
    assert rand["sensitivity_at_90_specificity"]["value"] == pytest.approx(0.1, abs=0.05)
    constant = triage_metrics(y, np.full(2000, 0.3), n_boot=0)
    assert constant["auroc"]["value"] == 0.5  # all ties


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.3).astype(int)
    p = np.clip(0.3 * y + 0.7 * rng.random(300), 0, 1)
    a = triage_metrics(y, p, n_boot=200, seed=5)
    assert a == triage_metrics(y, p, n_boot=200, seed=5)
    assert a["auroc"]["ci_low"] != triage_metrics(y, p, n_boot=200, seed=6)["auroc"]["ci_low"]
    for key in ("auroc", "auprc"):
        assert a[key]["ci_low"] <= a[key]["value"] <= a[key]["ci_high"]


def test_calibration_bins_and_ece():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.15, 0.12, 1.0, 0.95])
    rows = calibration_bins(y, p, n_bins=10)
    assert [r["count"] for r in rows] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]  # p = 1.0 falls in the last bin
    assert math.isnan(rows[2]["mean_predicted"])
    expected = (1 * abs(0 - 0.05) + 2 * abs(1 - 0.135) + 2 * abs(0.5 - 0.975)) / 5
    assert expected_calibration_error(y, p, 10) == pytest.approx(expected)
    with pytest.raises(ValueError, match="sigmoid"):
        calibration_bins(y, p * 2)


def test_single_class_gives_nan_with_reason():
    m = triage_metrics(np.zeros(10, int), np.linspace(0, 1, 10), n_boot=100)
    assert math.isnan(m["auroc"]["value"]) and "one class" in m["auroc"]["reason"]
    assert "one class" in m["reason"] and m["brier"] >= 0
    assert math.isnan(m["at_threshold"]["sensitivity"]) and m["at_threshold"]["specificity"] == 0.5
    empty = triage_metrics(np.zeros(0, int), np.zeros(0), n_boot=10)
    assert empty["n"] == 0 and "no samples" in empty["reason"]
    with pytest.raises(ValueError, match="0 or 1"):
        triage_metrics([0, 1, -1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        triage_metrics([0, 1], [0.1, np.nan])


def test_culprit_metrics():
    true = np.array([1, 2, 3, 1, 2, -100, 0, 3])
    scores = np.zeros((8, 4))
    pred = [1, 2, 1, 1, 3, 2, 2, 3]
    scores[np.arange(8), pred] = 1.0
    scores[1, 0] = 5.0  # "none" scores highest: ignored among vessels, wrong in 4-way
    m = culprit_metrics(true, scores)
    kept_true, kept_pred = np.array([1, 2, 3, 1, 2, 3]), np.array([1, 2, 1, 1, 3, 3])
    assert m["n"] == 6 and m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx(f1_score(kept_true, kept_pred, average="macro"))
    assert m["recall"] == {"LAD": 1.0, "LCx": 0.5, "RCA": 0.5}
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [1, 0, 1]] and m["confusion_labels"] == [
        "LAD",
        "LCx",
        "RCA",
    ]
    four_way = culprit_metrics(true, scores, vessels_only=False)
    assert four_way["accuracy"] == pytest.approx(3 / 6) and len(four_way["confusion_matrix"]) == 4
    none = culprit_metrics([0, -100], np.zeros((2, 4)))
    assert math.isnan(none["accuracy"]) and "no positives" in none["reason"]
    with pytest.raises(ValueError, match="culprit_scores"):
        culprit_metrics(true, scores[:, :3])


def test_stenosis_metrics_mask_nan():
    nan = np.nan
    true = np.array([[0.9, 0.1, nan], [0.2, 0.8, nan], [0.75, 0.3, 0.1], [0.1, 0.95, 0.2]])
    pred = np.array([[0.8, 0.2, 0.5], [0.3, 0.6, 0.5], [0.5, 0.4, 0.1], [0.2, 0.9, 0.3]])
    m = stenosis_metrics(true, pred)
    known = ~np.isnan(true)
    assert m["all"]["n"] == 10
    assert m["all"]["mae"] == pytest.approx(np.abs(true - pred)[known].mean())
    assert m["all"]["auroc"] == pytest.approx(roc_auc_score(true[known] > 0.7, pred[known]))
    assert m["LAD"]["n"] == 4 and m["LAD"]["auroc"] == 1.0
    assert math.isnan(m["RCA"]["auroc"]) and "one class" in m["RCA"]["reason"]  # no RCA stenosis > 70 %
    assert m["RCA"]["mae"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="NaN"):
        stenosis_metrics(true, np.full_like(pred, nan))


def test_subgroup_rates_and_gaps():
    # group a: 4 positives (3 caught), 6 negatives (1 false alarm); b: 4 positives (2), 6 negatives (3);
    # c: negatives only; d: 1 positive (caught) -> too few for the TPR gap with min_count=2
    y = np.r_[[1] * 4 + [0] * 6, [1] * 4 + [0] * 6, [0] * 5, [1]]
    called = np.r_[[1, 1, 1, 0] + [1, 0, 0, 0, 0, 0], [1, 1, 0, 0] + [1, 1, 1, 0, 0, 0], [0] * 5, [1]]
    z = np.r_[[0] * 10, [1] * 10, [2] * 5, [3]]
    m = subgroup_metrics(y, called * 0.8 + 0.1, z, threshold=0.5, strata_names=["a", "b", "c", "d"], min_count=2)
    g = m["groups"]
    assert g["a"]["tpr"] == 0.75 and g["a"]["fpr"] == pytest.approx(1 / 6) and g["a"]["n"] == 10
    assert g["b"]["tpr"] == 0.5 and g["b"]["fpr"] == 0.5
    assert math.isnan(g["c"]["tpr"]) and g["c"]["fpr"] == 0.0  # no positives: NaN, not fairlearn's 0
    assert g["d"]["tpr"] == 1.0
    assert m["tpr_gap"] == {"gap": 0.25, "worst_group": "b", "worst_value": 0.5, "groups": 2}
    assert m["fpr_gap"]["gap"] == 0.5 and m["fpr_gap"]["worst_group"] == "b" and m["fpr_gap"]["groups"] == 3
    assert m["equalized_odds_difference"] == 0.5
    loose = subgroup_metrics(y, called * 0.8 + 0.1, z, min_count=1)
    assert loose["tpr_gap"]["gap"] == 0.5 and "z3" in loose["groups"]
    strict = subgroup_metrics(y, called, z, min_count=50)
    assert math.isnan(strict["tpr_gap"]["gap"]) and "fewer than 2" in strict["tpr_gap"]["reason"]


@pytest.fixture(scope="module")
def predictions():
    rng = np.random.default_rng(7)
    n = 400
    y = (rng.random(n) < 0.25).astype(int)
    y[:10] = -1
    prob = np.clip(0.35 * (y == 1) + 0.65 * rng.random(n), 0, 1)
    culprit = np.where(y == 1, rng.integers(1, 4, n), np.where(y == 0, 0, -100))
    scores = rng.normal(size=(n, 4)) + 2 * np.eye(4)[np.clip(culprit, 0, 3)]
    stenosis = np.where((y == 1)[:, None], rng.uniform(0.5, 1, (n, 3)), rng.uniform(0, 0.5, (n, 3)))
    stenosis[rng.random((n, 3)) < 0.1] = np.nan
    return {
        "triage_true": y,
        "triage_prob": prob,
        "triage_prob_adjusted": prob**1.2,
        "culprit_true": culprit,
        "culprit_scores": scores,
        "stenosis_true": stenosis,
        "stenosis_pred": np.clip(np.nan_to_num(stenosis, nan=0.5) + rng.normal(0, 0.1, (n, 3)), 0, 1),
        "strata": rng.integers(0, 4, n),
        "strata_names": ["age<50|M", "age<50|F", "age>=50|M", "age>=50|F"],
    }


def test_evaluate_predictions_one_stop(predictions, tmp_path):
    m = evaluate_predictions(**predictions, n_boot=100)
    assert set(m) == {
        "settings",
        "triage",
        "triage_adjusted",
        "subgroups",
        "subgroups_adjusted",
        "culprit",
        "stenosis",
    }
    known = predictions["triage_true"] >= 0
    assert m["triage"]["n"] == known.sum() == 390
    assert m["triage"]["auroc"]["value"] == pytest.approx(
        roc_auc_score(predictions["triage_true"][known], predictions["triage_prob"][known])
    )
    # a monotone transform keeps the ranking: same AUROC, different calibration
    assert m["triage_adjusted"]["auroc"]["value"] == pytest.approx(m["triage"]["auroc"]["value"])
    assert m["triage_adjusted"]["brier"] != m["triage"]["brier"]
    assert set(m["subgroups"]["groups"]) == set(predictions["strata_names"])
    assert m["culprit"]["accuracy"] > 0.6 and m["stenosis"]["all"]["auroc"] > 0.9
    json.dumps(m, allow_nan=False)
    path = save_metrics(m, tmp_path / "run" / "metrics.json")
    assert json.loads(path.read_text()) == m
    minimal = evaluate_predictions(predictions["triage_true"], predictions["triage_prob"], n_boot=0)
    assert set(minimal) == {"settings", "triage"}
    with pytest.raises(ValueError, match="both"):
        evaluate_predictions(predictions["triage_true"], predictions["triage_prob"], culprit_true=[1])
    with pytest.raises(ValueError, match="strata"):
        evaluate_predictions(predictions["triage_true"], predictions["triage_prob"], strata=[0, 1])


def test_degenerate_split_does_not_crash():
    y = np.zeros(20, int)
    m = evaluate_predictions(
        y, np.linspace(0, 1, 20), strata=np.arange(20) % 2, culprit_true=y, culprit_scores=np.zeros((20, 4))
    )
    assert m["triage"]["auroc"]["value"] is None and "one class" in m["triage"]["auroc"]["reason"]
    assert m["culprit"]["accuracy"] is None
    assert m["subgroups"]["tpr_gap"]["gap"] is None
    json.dumps(m, allow_nan=False)


def test_to_jsonable():
    out = to_jsonable({"a": np.float32(1.5), 2: [np.int64(3), np.nan, np.array([np.inf, 1.0])], "b": np.bool_(True)})
    assert out == {"a": 1.5, "2": [3, None, [None, 1.0]], "b": True}


def _is_png(path) -> bool:
    return path.stat().st_size > 2000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_are_written(predictions, tmp_path):
    m = evaluate_predictions(**predictions, n_boot=0)
    paths = plot_evaluation(
        tmp_path / "plots",
        predictions["triage_true"],
        predictions["triage_prob"],
        m,
        predictions["triage_prob_adjusted"],
    )
    assert set(paths) == {"roc", "pr", "calibration", "stratum_sensitivity", "culprit_confusion"}
    assert all(_is_png(p) for p in paths.values())
    # degenerate data still draws (with a note) instead of failing
    assert _is_png(plot_roc(np.zeros(5, int), np.linspace(0, 1, 5), tmp_path / "one_class_roc.png"))
    with pytest.raises(ValueError, match="labels"):
        plot_confusion_matrix([[1, 2], [3, 4]], ["LAD", "LCx", "RCA"], tmp_path / "bad.png")
