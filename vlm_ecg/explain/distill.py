"""Distil the agent's policy into a depth-limited decision tree a clinician can read.

    distiller = TreeDistiller(max_depth=5, dagger_rounds=1).fit(agent, env, val_idx)
    distiller.fidelity_, distiller.validity_          # agreement with the agent on held-out ECGs; share flipped
    distiller.tree_.save("tree.json"); TreePolicy.load("tree.json").act(states, masks)
    print(distiller.tree_.rules())                    # IF "V3 ST (mV) > 0.12" AND ... THEN lower V3 ST ... by 0.10 mV

Method (ReLAX's distillation, with DAgger, Ross et al. 2011): roll the agent out greedily on the fitting ECGs and
label every visited state with the agent's edit; fit a scikit-learn `DecisionTreeClassifier` (state features ->
edit); then roll the TREE out on the same ECGs, label the states it visits with the agent's edit, add them and
refit (`dagger_rounds` times), so the tree also learns what the agent would do where the tree goes. Held-out ECGs
give the fidelity (share of the agent's states where the tree picks the agent's edit) and the validity of
counterfactuals found by following the tree alone.

The tree's classes are edits, (lead or territory, segment, direction) ("lower V2 ST"), the decision a reader
follows; the step size is the one the agent used most for that edit (`TreePolicy.act`), so rules read "THEN lower V2
ST segment (J+60 ms) by 0.10 mV". One more class, "repeat the largest edit so far" (`repeat_edits`), stands for
whichever concrete edit continues the state's largest edit: about half of the agent's steps continue an edit it has
begun (V2 ST lowered again until the cap), and a depth-limited tree cannot spell that out lead by lead. Measured with
bench/bench_explain.py on the default run (200 positives) with this class vs without: fidelity on the agent's test
states 0.37 -> 0.49, validity of the tree's own counterfactuals 0.64 -> 0.72 (validation fidelity 0.47 -> 0.54).
That is still a tree that agrees with the agent half the time: `vlm_ecg.explain.consistency` (run by
``explain-train`` before this distillation) fine-tunes the agent's first choice towards such a tree, after which a
tree fitted here agrees with it far more often (see that module).

`fidelity_` counts agreement on the edit, `action_fidelity_` on the edit and its size. The tree acts through the same
action mask as the agent: it takes its most probable edit that is allowed in the state (the agent's usual size first,
another size of the same edit next; ties broken by how often the agent used each action).

The fitted tree is stored WITHOUT pickle: its arrays (children, feature, threshold, value, classes, names) go
to JSON and `TreePolicy` rebuilds a predictor from them that equals sklearn's (`apply`, `predict_proba`; `predict`
too, once a "repeat" leaf's edit is resolved).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..run_folder import write_text_atomic
from .agent import run_episodes
from .state import N_SLOTS

logger = logging.getLogger(__name__)

TREE_FORMAT = "vlm_ecg-explainer-tree/1"
REPEAT_WORDS = "repeat the largest edit so far (same lead, segment and direction)"
TERRITORY_REPEAT_WORDS = "repeat the largest edit so far's territory edit (same territory, segment and direction)"


def repeat_edits(states: np.ndarray, masks: np.ndarray, n_levels: int, edit_of_slot: np.ndarray | None = None
                 ) -> np.ndarray:  # fmt: skip
    """(N,) the edit index (target, segment, direction) that continues each state's largest edit so far among those
    with a step still allowed; -1 where no edit can be continued (ties: the first lead and segment).

    Args:
        edit_of_slot: (N_SLOTS * 2,) `ActionSpace.edit_of_slot` (None: single-lead targets, the identity).
    """
    edits = np.asarray(states, dtype=np.float64)[:, N_SLOTS : 2 * N_SLOTS]  # (N, 48) edit so far per slot
    cont = np.arange(N_SLOTS)[None] * 2 + (edits > 0)  # (N, 48) the edit that continues each slot's edit
    if edit_of_slot is not None:
        cont = np.asarray(edit_of_slot)[cont]
    allowed = np.asarray(masks).reshape(len(edits), -1, n_levels).any(axis=2)  # (N, edits)
    score = np.where((edits != 0) & np.take_along_axis(allowed, cont, axis=1), np.abs(edits), -1.0)
    best = score.argmax(axis=1)
    return np.where(score.max(axis=1) > 0, cont[np.arange(len(edits)), best], -1)


class TreePolicy:
    """A fitted classification tree as plain arrays: predicts edits (and acts) without sklearn or pickle.

    Args:
        children_left, children_right: (nodes,) child indices, -1 at leaves.
        feature: (nodes,) feature index tested at each split node (negative at leaves).
        threshold: (nodes,) split threshold: go left when ``x[feature] <= threshold``.
        value: (nodes, classes) class weights at each node.
        classes: (classes,) edit index of each class (action // n_levels: (lead, segment, direction)); the index
            one past the last edit (`repeat_class`) means "repeat the largest edit so far" (`repeat_edits`).
        feature_names: names of the state features.
        action_names: (n_actions,) words of every action of the action space.
        action_prior: (n_actions,) how often the agent took each action (step size per edit, tie-breaking).
        n_levels: step sizes per edit in the action space.
        edit_of_slot: (N_SLOTS * 2,) the edit that moves each (lead, segment) slot in each direction
            (`ActionSpace.edit_of_slot`; None: single-lead targets).
    """

    def __init__(self, children_left, children_right, feature, threshold, value, classes, feature_names,
                 action_names, action_prior, n_levels, edit_of_slot=None):  # fmt: skip
        self.children_left = np.asarray(children_left, dtype=np.int64)
        self.children_right = np.asarray(children_right, dtype=np.int64)
        self.feature = np.asarray(feature, dtype=np.int64)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.value = np.asarray(value, dtype=np.float64).reshape(len(self.feature), -1)
        self.classes = np.asarray(classes, dtype=np.int64)
        self.feature_names = list(feature_names)
        self.action_names = list(action_names)
        self.action_prior = np.asarray(action_prior, dtype=np.float64)
        self.n_levels = int(n_levels)
        self.edit_of_slot = None if edit_of_slot is None else np.asarray(edit_of_slot, dtype=np.int64)

    @classmethod
    def from_sklearn(cls, clf, feature_names, action_names, action_prior, n_levels, edit_of_slot=None) -> TreePolicy:
        t = clf.tree_
        return cls(t.children_left, t.children_right, t.feature, t.threshold, t.value[:, 0, :], clf.classes_,
                   feature_names, action_names, action_prior, n_levels, edit_of_slot)  # fmt: skip

    # ------------------------------------------------------------------ predicting
    @property
    def n_edits(self) -> int:
        return len(self.action_names) // self.n_levels

    @property
    def repeat_class(self) -> int:
        return self.n_edits

    @property
    def depth(self) -> int:
        def walk(node: int) -> int:
            if self.children_left[node] < 0:
                return 0
            return 1 + max(walk(self.children_left[node]), walk(self.children_right[node]))

        return walk(0)

    def apply(self, states: np.ndarray) -> np.ndarray:
        """(N,) leaf index of each state (sklearn compares float32 features against float64 thresholds)."""
        x = np.asarray(states, dtype=np.float32).astype(np.float64)
        node = np.zeros(len(x), dtype=np.int64)
        for _ in range(len(self.feature)):
            inner = self.children_left[node] >= 0
            if not inner.any():
                break
            rows = np.flatnonzero(inner)
            n = node[rows]
            left = x[rows, self.feature[n]] <= self.threshold[n]
            node[rows] = np.where(left, self.children_left[n], self.children_right[n])
        return node

    def predict_proba(self, states: np.ndarray) -> np.ndarray:
        """(N, classes) class shares at each state's leaf."""
        v = self.value[self.apply(states)]
        return v / np.maximum(v.sum(axis=1, keepdims=True), 1e-12)

    def edit_scores(self, states: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """(N, edits) each edit's share at the state's leaf, the "repeat" share given to the edit it stands for."""
        proba = self.predict_proba(states)
        scores = np.zeros((len(proba), self.n_edits + 1))
        scores[:, self.classes] = proba
        target = repeat_edits(states, masks, self.n_levels, self.edit_of_slot)
        rows = np.flatnonzero(target >= 0)
        scores[rows, target[rows]] += scores[rows, self.repeat_class]
        return scores[:, : self.n_edits]

    def predict(self, states: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """(N,) edit index of the leaf's majority class ("repeat" resolved through `masks`, all allowed if None)."""
        if masks is None:
            masks = np.ones((len(states), len(self.action_names)), dtype=bool)
        return self.edit_scores(states, masks).argmax(axis=1)

    def class_words(self, edit: int) -> str:
        """A class in words: its edit with the usual step size, or the "repeat" rule."""
        if edit == self.repeat_class:
            return REPEAT_WORDS if self.edit_of_slot is None else TERRITORY_REPEAT_WORDS
        return self.action_names[self.usual_action(edit)]

    def usual_action(self, edit: int) -> int:
        """The action of `edit` with the step size the agent used most for it."""
        sizes = self.action_prior[edit * self.n_levels : (edit + 1) * self.n_levels]
        return edit * self.n_levels + int(np.argmax(sizes))

    def act(self, states: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """(N,) the most probable allowed action at each state (see the module docstring)."""
        n_actions = masks.shape[1]
        edit_scores = self.edit_scores(states, masks)
        usual = np.zeros(n_actions)
        usual[[self.usual_action(e) for e in range(n_actions // self.n_levels)]] = 1.0
        scores = np.repeat(edit_scores, self.n_levels, axis=1) * (0.5 + 0.5 * usual)[None]
        prior = self.action_prior / max(self.action_prior.max(), 1e-12)
        scores = scores + 1e-6 * prior[None] + 1e-9  # every allowed action beats every masked one
        return np.where(masks, scores, -1.0).argmax(axis=1)

    # ------------------------------------------------------------------ reading
    def rules(self) -> str:
        """One IF ... THEN rule per leaf, in words (bounds on the same feature merged)."""
        lines = []

        def walk(node: int, bounds: dict[int, list[float]]) -> None:
            if self.children_left[node] < 0:
                v = self.value[node]
                k = int(v.argmax())
                share = float(v[k] / max(v.sum(), 1e-12))
                conds = []
                for f, (lo, hi) in bounds.items():  # in the order the path from the root tests them
                    name = self.feature_names[f]
                    if np.isfinite(lo) and np.isfinite(hi):
                        conds.append(f"{lo:.3f} < {name} <= {hi:.3f}")
                    elif np.isfinite(lo):
                        conds.append(f"{name} > {lo:.3f}")
                    else:
                        conds.append(f"{name} <= {hi:.3f}")
                cond = " AND ".join(f'"{c}"' for c in conds) or "always"
                action = self.class_words(int(self.classes[k]))
                lines.append(f"IF {cond} THEN {action}  [{share:.0%} of the agent's edits in this leaf]")
                return
            f, thr = int(self.feature[node]), float(self.threshold[node])
            lo, hi = bounds.get(f, [-np.inf, np.inf])
            walk(int(self.children_left[node]), {**bounds, f: [lo, min(hi, thr)]})
            walk(int(self.children_right[node]), {**bounds, f: [max(lo, thr), hi]})

        walk(0, {})
        return "\n".join(f"Rule {i + 1}: {line}" for i, line in enumerate(lines))

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {
            "format": TREE_FORMAT,
            "children_left": self.children_left.tolist(),
            "children_right": self.children_right.tolist(),
            "feature": self.feature.tolist(),
            "threshold": self.threshold.tolist(),
            "value": self.value.tolist(),
            "classes": self.classes.tolist(),
            "feature_names": self.feature_names,
            "action_names": self.action_names,
            "action_prior": self.action_prior.tolist(),
            "n_levels": self.n_levels,
            "edit_of_slot": None if self.edit_of_slot is None else self.edit_of_slot.tolist(),
        }

    def save(self, path: str | Path) -> Path:
        return write_text_atomic(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> TreePolicy:
        """Rebuild from `save`'s JSON.

        Raises:
            ValueError: not a tree file of this format.
        """
        data = json.loads(Path(path).read_text())
        if data.get("format") != TREE_FORMAT:
            raise ValueError(f"{path}: not a vlm_ecg explainer tree (format {data.get('format')!r})")
        data.pop("format")
        return cls(**data)


def fidelity(tree: TreePolicy, states: np.ndarray, masks: np.ndarray, actions: np.ndarray,
             with_size: bool = False) -> float:  # fmt: skip
    """Share of states where the tree (acting through the mask) makes the agent's edit (and, `with_size`, with the
    agent's step size); NaN without states."""
    if len(actions) == 0:
        return float("nan")
    chosen = tree.act(states, masks)
    if with_size:
        return float((chosen == actions).mean())
    return float((chosen // tree.n_levels == np.asarray(actions) // tree.n_levels).mean())


class TreeDistiller:
    """Fit a decision tree to the agent's greedy policy (scikit-learn estimator conventions).

    Args:
        max_depth: depth limit of the tree (<= 5 keeps it readable).
        min_samples_leaf: smallest leaf, in states.
        dagger_rounds: DAgger re-roll-outs of the tree (0 = plain behaviour cloning).
        holdout_fraction: share of the ECGs kept out of fitting, for fidelity and validity.
        seed: the ECG split and the tree's tie-breaking.
    """

    def __init__(self, max_depth: int = 5, min_samples_leaf: int = 10, dagger_rounds: int = 1,
                 holdout_fraction: float = 0.3, seed: int = 0):  # fmt: skip
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.dagger_rounds = dagger_rounds
        self.holdout_fraction = holdout_fraction
        self.seed = seed

    def fit_tree(self, states, masks, actions, names, space, prior=None) -> tuple[TreePolicy, object]:
        """One tree fitted to (state, the agent's action) pairs: (`TreePolicy`, the sklearn estimator).

        Args:
            states, masks, actions: the agent's visited states, their action masks and its actions there.
            names: state feature names.
            space: the agent's `ActionSpace`.
            prior: (A,) how often the agent took each action (None: counted from `actions`).
        """
        from sklearn.tree import DecisionTreeClassifier

        if prior is None:
            prior = np.bincount(actions, minlength=len(space)).astype(float)
        n_levels = len(space.levels_mv)
        edits = actions // n_levels
        edit_of_slot = None if space.single_leads else space.edit_of_slot
        repeat = repeat_edits(states, masks, n_levels, edit_of_slot)
        labels = np.where(edits == repeat, len(space) // n_levels, edits)
        clf = DecisionTreeClassifier(max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
                                     random_state=self.seed).fit(states, labels)  # fmt: skip
        action_names = [space.name(a) for a in range(len(space))]
        return TreePolicy.from_sklearn(clf, names, action_names, prior, n_levels, edit_of_slot), clf

    def fit(self, agent, env, idx: np.ndarray, extra: list[tuple] | None = None) -> TreeDistiller:
        """Distil `agent` on pool ECGs `idx` of `env` (split into fitting and held-out ECGs).

        Args:
            agent: the `CounterfactualAgent`.
            env: environment of the distillation ECGs (validation split).
            idx: its pool indices to use (the positives).
            extra: more (env, idx) pairs whose roll-outs are only fitted on (e.g. the training split's positives:
                more states for the tree); fidelity and validity always come from held-out ECGs of `env`.

        Raises:
            ValueError: fewer than 2 ECGs, or the agent took no step on the fitting ECGs.
        """
        if not 1 <= self.max_depth <= 5:
            raise ValueError(f"max_depth must be 1..5 for a readable tree, got {self.max_depth}")
        idx = np.asarray(idx)
        if len(idx) < 2:
            raise ValueError(f"distillation needs at least 2 ECGs, got {len(idx)}")
        order = np.random.default_rng(self.seed).permutation(idx)
        n_hold = min(max(1, int(round(self.holdout_fraction * len(order)))), len(order) - 1)
        fit_idx, hold_idx = order[n_hold:], order[:n_hold]
        names = agent.feature_names
        sources = [(env, fit_idx), *((e, np.asarray(i)) for e, i in (extra or []) if len(i))]

        seen = [run_episodes(e, i, agent.policy)[1] for e, i in sources]
        states = np.concatenate([t["states"] for t in seen])
        masks = np.concatenate([t["masks"] for t in seen])
        actions = np.concatenate([t["actions"] for t in seen])
        if len(actions) == 0:
            raise ValueError("the agent took no step on the distillation ECGs (none is predicted positive?)")
        prior = np.bincount(actions, minlength=len(agent.actions)).astype(float)
        n_levels = len(agent.actions.levels_mv)
        tree, clf = self.fit_tree(states, masks, actions, names, agent.actions, prior)
        for _ in range(self.dagger_rounds):
            visited = [run_episodes(e, i, tree.act)[1] for e, i in sources]
            new_states = np.concatenate([v["states"] for v in visited])
            if len(new_states) == 0:
                break
            new_masks = np.concatenate([v["masks"] for v in visited])
            states = np.concatenate([states, new_states])
            masks = np.concatenate([masks, new_masks])
            actions = np.concatenate([actions, agent.policy(new_states, new_masks)])
            tree, clf = self.fit_tree(states, masks, actions, names, agent.actions, prior)

        agent_ep, held = run_episodes(env, hold_idx, agent.policy)
        tree_ep, tree_seen = run_episodes(env, hold_idx, tree.act)
        self.tree_, self.sklearn_tree_ = tree, clf
        self.fidelity_ = fidelity(tree, held["states"], held["masks"], held["actions"])
        self.action_fidelity_ = fidelity(tree, held["states"], held["masks"], held["actions"], with_size=True)
        self.fidelity_on_tree_states_ = fidelity(tree, tree_seen["states"], tree_seen["masks"],
                                                 agent.policy(tree_seen["states"], tree_seen["masks"]))  # fmt: skip
        self.validity_ = float(tree_ep.flipped.mean())
        self.agent_validity_ = float(agent_ep.flipped.mean())
        self.report_ = {
            "max_depth": self.max_depth,
            "depth": tree.depth,
            "leaves": int((tree.children_left < 0).sum()),
            "dagger_rounds": self.dagger_rounds,
            "fit_ecgs": int(sum(len(i) for _, i in sources)),
            "holdout_ecgs": int(len(hold_idx)),
            "fit_states": int(len(actions)),
            "holdout_states": int(len(held["actions"])),
            "fidelity": self.fidelity_,
            "action_fidelity": self.action_fidelity_,
            "fidelity_on_tree_states": self.fidelity_on_tree_states_,
            "tree_validity": self.validity_,
            "agent_validity": self.agent_validity_,
            "train_accuracy": float((tree.predict(states, masks) == actions // n_levels).mean()),
        }
        logger.info("distilled tree: depth %d, fidelity %.2f, tree validity %.2f (agent %.2f)", tree.depth,
                    self.fidelity_, self.validity_, self.agent_validity_)  # fmt: skip
        return self

    def plot(self, path: str | Path) -> Path:
        """Draw the fitted tree (sklearn.tree.plot_tree) into a PNG at `path` (written atomically)."""
        import os
        import tempfile

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.tree import plot_tree

        tree = self.tree_
        leaves = int((tree.children_left < 0).sum())
        short = [
            "repeat" if c == tree.repeat_class else _short_action(tree.action_names[tree.usual_action(int(c))])
            for c in tree.classes
        ]
        fig, ax = plt.subplots(figsize=(max(10.0, 2.4 * leaves), 2.2 * (tree.depth + 1) + 1))
        boxes = plot_tree(self.sklearn_tree_, feature_names=tree.feature_names, class_names=short, filled=True,
                          impurity=False, proportion=True, rounded=True, fontsize=8, ax=ax)  # fmt: skip
        for box in boxes:  # the per-class share vectors (dozens of edits) would bury the rules: keep the rest
            box.set_text("\n".join(line for line in box.get_text().split("\n") if not line.startswith("value")))
        ax.set_title("What the explainer does: distilled decision tree (class = next edit, usual step size)")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
        os.close(fd)
        fig.savefig(tmp, dpi=80, bbox_inches="tight")
        plt.close(fig)
        os.replace(tmp, path)
        return path


def _short_action(name: str) -> str:
    """ "lower V3 ST segment (J+60 ms) by 0.10 mV" -> "V3 ST -0.10"."""
    words = name.split()
    sign = "-" if words[0] in ("lower", "reduce") else "+"
    segment = {"P": "P", "QRS": "QRS", "ST": "ST", "T": "T"}.get(words[2], words[2])
    return f"{words[1]} {segment} {sign}{words[-2]}"
