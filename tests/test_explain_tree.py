"""The distilled tree without pickle: JSON arrays rebuild a predictor equal to sklearn's; acting, rules, fidelity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from vlm_ecg.explain.distill import REPEAT_WORDS, TreePolicy, fidelity, repeat_edits
from vlm_ecg.explain.state import N_SLOTS, ActionSpace, feature_names


@pytest.fixture(scope="module")
def fitted():
    """A depth-5 tree on state-shaped data whose labels follow a few feature thresholds, like an agent's actions."""
    rng = np.random.default_rng(0)
    names = feature_names()
    space = ActionSpace((0.05, 0.1, 0.2))
    x = rng.normal(0.0, 0.2, size=(600, len(names))).astype(np.float32)
    st_v3, t_v2 = names.index("V3 ST (mV)"), names.index("V2 T (mV)")
    y = np.where(x[:, st_v3] > 0.1, space.index("V3", "ST", -0.1), space.index("V2", "T", -0.2))
    y = np.where((x[:, st_v3] <= 0.1) & (x[:, t_v2] < -0.2), space.index("II", "ST", -0.05), y)
    y[rng.random(len(y)) < 0.05] = space.index("V5", "T", 0.1)  # a little disagreement
    n_levels = len(space.levels_mv)
    clf = DecisionTreeClassifier(max_depth=5, random_state=0).fit(x, y // n_levels)  # classes: edits
    names_of_actions = [space.name(a) for a in range(len(space))]
    prior = np.bincount(y, minlength=len(space)).astype(float)
    return clf, TreePolicy.from_sklearn(clf, names, names_of_actions, prior, n_levels), x, y, space


def test_json_round_trip_equals_sklearn(fitted, tmp_path):
    clf, tree, x, _, _ = fitted
    path = tree.save(tmp_path / "tree.json")
    data = json.loads(path.read_text())
    assert data["format"] == "vlm_ecg-explainer-tree/1" and len(data["threshold"]) == clf.tree_.node_count
    rebuilt = TreePolicy.load(path)
    rng = np.random.default_rng(1)
    probe = rng.normal(0.0, 0.3, size=(2000, x.shape[1])).astype(np.float32)
    # values exactly at the split thresholds go the same way as in sklearn
    inner = np.flatnonzero(clf.tree_.children_left >= 0)
    for k, node in enumerate(inner):
        probe[k, clf.tree_.feature[node]] = clf.tree_.threshold[node]
    np.testing.assert_array_equal(rebuilt.predict(probe), clf.predict(probe))
    np.testing.assert_array_equal(
        rebuilt.act(probe, np.ones((len(probe), 288), bool)), tree.act(probe, np.ones((len(probe), 288), bool))
    )
    np.testing.assert_allclose(rebuilt.predict_proba(probe), clf.predict_proba(probe), atol=1e-12)
    np.testing.assert_array_equal(rebuilt.apply(probe), clf.apply(probe))
    assert rebuilt.depth == clf.get_depth() <= 5


def test_load_refuses_other_json(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a vlm_ecg explainer tree"):
        TreePolicy.load(tmp_path / "x.json")


def test_act_respects_the_mask_and_fidelity(fitted):
    _, tree, x, y, space = fitted
    n_levels = tree.n_levels
    masks = np.ones((len(x), len(space)), dtype=bool)
    acted = tree.act(x, masks)
    np.testing.assert_array_equal(acted // n_levels, tree.predict(x))  # the predicted edit ...
    np.testing.assert_array_equal(acted, [tree.usual_action(e) for e in tree.predict(x)])  # ... at its usual size
    assert space.edit(tree.usual_action(space.index("V3", "ST", -0.1) // n_levels)).amplitude_mv == -0.1
    assert fidelity(tree, x, masks, y) == pytest.approx(float((tree.predict(x) == y // n_levels).mean()))
    assert fidelity(tree, x, masks, y) > 0.85
    assert fidelity(tree, x, masks, y, with_size=True) == pytest.approx(float((acted == y).mean()))
    # forbid the usual size: the same edit at another size comes next; forbid the whole edit: another edit
    masks[np.arange(len(x)), acted] = False
    second = tree.act(x, masks)
    assert (second // n_levels == acted // n_levels).all() and (second != acted).all()
    for k in range(n_levels):
        masks[np.arange(len(x)), (acted // n_levels) * n_levels + k] = False
    third = tree.act(x, masks)
    assert masks[np.arange(len(x)), third].all() and (third // n_levels != acted // n_levels).all()
    assert fidelity(tree, x[:0], masks[:0], y[:0]) != fidelity(tree, x[:0], masks[:0], y[:0])  # NaN when empty


def test_rules_are_readable(fitted):
    _, tree, _, _, _ = fitted
    rules = tree.rules().splitlines()
    assert len(rules) == int((tree.children_left < 0).sum())
    assert all(r.startswith("Rule ") and " IF " in r and " THEN " in r for r in rules)
    assert all(r.split(" IF ")[1].startswith('"V3 ST (mV)') for r in rules)  # the root's test comes first
    assert any('"V3 ST (mV) > 0.100"' in r and "THEN lower V3 ST segment (J+60 ms) by 0.10 mV  [9" in r
               and r.endswith("% of the agent's edits in this leaf]") for r in rules)  # fmt: skip


def test_repeat_class_continues_the_largest_edit_so_far():
    """The "repeat" class stands for the edit continuing the state's largest edit whose next step is allowed."""
    names = feature_names()
    space = ActionSpace((0.1, 0.2, 0.3))
    n_levels, n_edits = 3, len(space) // 3
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 0.2, size=(400, len(names))).astype(np.float32)
    x[:, N_SLOTS : 2 * N_SLOTS] = 0.0  # no edits yet ...
    v2_st, ii_t = names.index("V2 ST edit (mV)"), names.index("II T edit (mV)")
    x[:200, v2_st], x[:200, ii_t] = -0.3, 0.1  # ... except on half the states: V2 ST lowered, II T raised
    masks = np.ones((len(x), len(space)), dtype=bool)
    lower_v2_st, raise_ii_t = space.index("V2", "ST", -0.1) // n_levels, space.index("II", "T", 0.1) // n_levels
    target = repeat_edits(x, masks, n_levels)
    assert (target[:200] == lower_v2_st).all() and (target[200:] == -1).all()
    blocked = masks.copy()
    blocked[:, lower_v2_st * n_levels : (lower_v2_st + 1) * n_levels] = False  # V2 ST at its cap: II T is next
    assert (repeat_edits(x, blocked, n_levels)[:200] == raise_ii_t).all()

    fresh = space.index("V5", "T", -0.1) // n_levels
    labels = np.where(np.arange(len(x)) < 200, n_edits, fresh)  # repeat once an edit has begun, else lower V5 T
    clf = DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, labels)
    prior = np.ones(len(space))
    tree = TreePolicy.from_sklearn(clf, names, [space.name(a) for a in range(len(space))], prior, n_levels)
    assert tree.repeat_class == n_edits
    np.testing.assert_array_equal(tree.predict(x, masks), np.where(np.arange(len(x)) < 200, lower_v2_st, fresh))
    acted = tree.act(x, blocked)
    assert (acted[:200] // n_levels == raise_ii_t).all() and blocked[np.arange(len(x)), acted].all()
    assert any(REPEAT_WORDS in rule for rule in tree.rules().splitlines())
