"""Explaining one ECG: the run's trained explainer (agent + distilled tree) around the model it explains.

    explainer = load_explainer("runs/default")               # reads runs/default/explainer/ and the model
    explanation = explainer.explain("patient.hea")           # -> Explanation (edits, counterfactual, probabilities)
    print(explainer.rules)                                   # the distilled tree's IF ... THEN rules
    explanation = explain(ecg, "runs/default")               # the same in one call (model path, Predictor or model)

Methods: "agent" (the RL policy's greedy roll-out: a few model calls), "tree" (follow the distilled tree),
"greedy" (the per-ECG search baseline: hundreds of calls). "auto" uses the agent for a positive decision (what it
was trained to explain) and the greedy search for a negative one (what would make the model send the patient to
angiography), or when the run has no trained explainer; `Explanation.method` says which ran.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from ..ecg import Ecg
from .agent import CounterfactualAgent, run_episodes
from .distill import TreePolicy
from .edits import apply_edits
from .environment import BlackBox, EcgPool, EditEnv, EnvConfig, logit
from .greedy import greedy_search
from .report import Explanation

logger = logging.getLogger(__name__)

EXPLAINER_DIR = "explainer"
TREE_FILE = "tree.json"
RULES_FILE = "rules.txt"
TREE_PNG = "tree.png"
DISTILL_REPORT = "distill_report.json"
METHODS = ("auto", "agent", "tree", "greedy")
# edits the agent tries per step. Default run, 200 positives, episodes of 20 edits (batched roll-outs): k = 4 0.895
# valid at 22 calls per ECG, k = 8 0.915 at 31; through explain() one ECG at a time (bench_explain) k = 8 0.92 at 40.
DEFAULT_TOP_K = 8


class Explainer:
    """The model plus its trained explainer.

    Args:
        predictor: the model (`vlm_ecg.predict.Predictor`).
        agent: the trained RL agent, or None (then only the greedy search is available).
        tree: the distilled tree policy, or None.
        directory: the explainer folder it was loaded from.
    """

    def __init__(self, predictor, agent: CounterfactualAgent | None = None, tree: TreePolicy | None = None,
                 directory: str | Path | None = None):  # fmt: skip
        self.predictor, self.agent, self.tree = predictor, agent, tree
        self.directory = Path(directory) if directory is not None else None

    @property
    def rules(self) -> str:
        """The distilled tree's rules in words ("" without a tree)."""
        return self.tree.rules() if self.tree is not None else ""

    @property
    def tree_png(self) -> Path | None:
        """The picture of the tree, when the explainer folder has one."""
        path = self.directory / TREE_PNG if self.directory is not None else None
        return path if path is not None and path.is_file() else None

    @property
    def report(self) -> dict:
        """The training / distillation report (fidelity, validity, ...), {} when absent."""
        path = self.directory / DISTILL_REPORT if self.directory is not None else None
        return json.loads(path.read_text()) if path is not None and path.is_file() else {}

    @property
    def env_config(self) -> EnvConfig:
        return self.agent.env_config if self.agent is not None else EnvConfig()

    def explain(
        self, ecg: Ecg | str | Path, method: str = "auto", confounders=None, top_k: int = DEFAULT_TOP_K
    ) -> Explanation:
        """Explain the model's triage decision on one ECG (read and standardised to 500 Hz, 10 s first).

        Args:
            ecg: a record or an ECG file (WFDB, CSV, NPZ).
            method: "auto", "agent", "tree" or "greedy" (see the module docstring).
            confounders: the patient's `Confounders` (age, sex, history) for the model's stratum; None = unknown.
            top_k: agent only: the policy's k best edits are tried per step in one batched model call and the best
                is kept (1 = the plain greedy policy, one call per step; see `CounterfactualAgent.rollout`).

        Raises:
            EcgError: the file cannot be read, or the record cannot be delineated (fewer than 2 beats).
            ValueError: an unknown method, or one the explainer was not trained for.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if not isinstance(ecg, Ecg):
            from ..io import read_ecg

            ecg = read_ecg(ecg)
        start = time.perf_counter()
        std = ecg.standardize()
        config = self.env_config
        blackbox = BlackBox(self.predictor)
        stratum = self.predictor.stratum_of(confounders)
        pool = EcgPool.build([std], blackbox, strata=[stratum], limb_policy=config.limb_policy, skip_errors=False)
        positive = bool(pool.prob0[0] >= blackbox.threshold)
        notes = []
        if method == "auto":
            method = "agent" if positive and self.agent is not None else "greedy"
            if positive and self.agent is None:
                notes.append("no trained explainer in this run: used the greedy search")
        if method == "agent" and self.agent is None:
            raise ValueError("this run has no trained explainer agent (train one with `vlm-ecg explain-train RUN`)")
        if method == "tree" and self.tree is None:
            raise ValueError("this run has no distilled tree (train one with `vlm-ecg explain-train RUN`)")
        if method in ("agent", "tree") and not positive:
            notes.append(f"the model already decides negative; the {method} explains positive decisions "
                         "(method 'greedy' searches what would make it positive)")  # fmt: skip
        if self.agent is not None:
            scale = self.agent.margin_scale
        else:  # no trained reward scale: progress counts in units of this ECG's own distance to the threshold
            scale = max(abs(float(logit(pool.prob0[0]) - logit(blackbox.threshold))), 1e-6)
        if method == "greedy":  # the search tries every lead, not only each territory's most extreme one
            config = dataclasses.replace(config, targets="lead")
        env = EditEnv(pool, blackbox, config, scale, direction=1 if positive or method != "greedy" else -1)
        if method == "agent":
            episodes = self.agent.rollout(env, np.array([0]), top_k=top_k)
        elif method == "tree":
            episodes = run_episodes(env, np.array([0]), self.tree.act)[0]
        else:
            episodes = greedy_search(env, 0)
        edits = episodes.edit_list(0)
        counterfactual = apply_edits(std, edits, pool.frames[0], config.limb_policy)
        explanation = Explanation(
            ecg=std,
            counterfactual=counterfactual,
            edits=edits,
            prob_before=float(pool.prob0[0]),
            prob_after=float(episodes.prob[0]),
            threshold=blackbox.threshold,
            method=method,
            probs=list(episodes.probs[0]),
            seconds=time.perf_counter() - start,
            n_queries=blackbox.n_queries,
            limb_policy=config.limb_policy,
            top_k=top_k if method == "agent" else 1,
            notes=notes,
        )
        if edits and not explanation.flipped:
            explanation.notes.append(f"no flip within {config.max_steps} edits and the physiological bounds")
        return explanation


def explainer_dir(run_dir: str | Path) -> Path:
    """`runs/NAME` or `runs/NAME/final` -> `runs/NAME/explainer` (an explainer folder itself is returned as is)."""
    from ..predict import run_root

    path = Path(run_dir)
    return path if (path / "agent.json").is_file() else run_root(path) / EXPLAINER_DIR


def load_explainer(run_dir: str | Path, predictor=None, require_agent: bool = True) -> Explainer:
    """The run's model and trained explainer (agent, tree, rules, tree picture).

    Args:
        run_dir: the run folder (`runs/NAME`, holding ``final/`` and ``explainer/``).
        predictor: the run's `Predictor` when already loaded.
        require_agent: raise when the run has no trained explainer (False: greedy search only).

    Raises:
        FileNotFoundError: no model, or (with `require_agent`) no explainer: train one with
            ``vlm-ecg explain-train RUN``.
    """
    from ..predict import Predictor

    predictor = predictor or Predictor.from_pretrained(run_dir)
    folder = explainer_dir(run_dir)
    agent = tree = None
    try:
        agent = CounterfactualAgent.load(folder)
    except FileNotFoundError:
        if require_agent:
            raise
        logger.info("%s: no trained explainer, greedy search only", folder)
    if (folder / TREE_FILE).is_file():
        tree = TreePolicy.load(folder / TREE_FILE)
    return Explainer(predictor, agent, tree, folder)


def explain(ecg: Ecg | str | Path, model_or_predictor, explainer: Explainer | None = None, method: str = "auto",
            confounders=None, top_k: int = DEFAULT_TOP_K) -> Explanation:  # fmt: skip
    """Explain the model's triage decision on `ecg` with edits that flip it.

    Args:
        ecg: a record or an ECG file.
        model_or_predictor: a run folder / hub id (its ``explainer/`` is used when present), a `Predictor`, or a
            `VlmEcgModel` (greedy search only unless `explainer` is given).
        explainer: a loaded `Explainer` (overrides the one found from `model_or_predictor`).
        method: "auto", "agent", "tree" or "greedy".
        confounders: the patient's `Confounders`, None = unknown.
        top_k: edits the agent tries per step (see `Explainer.explain`).

    Returns:
        The `Explanation` (ordered edits, counterfactual ECG, probability before / after, `.save(out_dir)`).
    """
    if explainer is None:
        from ..predict import Predictor

        if isinstance(model_or_predictor, (str, Path)):
            explainer = load_explainer(model_or_predictor, require_agent=False)
        elif isinstance(model_or_predictor, Predictor):
            explainer = Explainer(model_or_predictor)
        else:
            explainer = Explainer(Predictor(model_or_predictor))
    return explainer.explain(ecg, method=method, confounders=confounders, top_k=top_k)
