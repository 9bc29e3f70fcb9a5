"""Counterfactual explanations of the triage decision: physiological ECG edits found by an RL agent (ReLAX-style),
distilled into a decision tree.

    from vlm_ecg.explain import explain, load_explainer
    explanation = explain("patient.hea", "runs/default")       # agent roll-out: a few model calls
    explanation.texts                                          # ["lower V3 ST segment (J+60 ms) by 0.10 mV", ...]
    explanation.prob_before, explanation.prob_after, explanation.flipped
    explanation.save("out/")                                   # report.json, overlay.png, counterfactual.npz
    explainer = load_explainer("runs/default"); explainer.rules; explainer.tree_png

Train a run's explainer with ``vlm-ecg explain-train RUN``; explain a file with
``vlm-ecg explain FILE --run RUN --out DIR``; ``bench/bench_explain.py`` compares agent, tree and greedy search.

| module | holds |
|---|---|
| `edits` | `Edit`, `BeatFrame` (segment windows from the delineation), `apply_edits`, bounds, limb-lead coupling |
| `state` | state vector (measurements, edits so far, probability) and the discrete `ActionSpace` (lead/territory) |
| `environment` | the MDP: `BlackBox` (batched model calls), `EcgPool`, `EditEnv` (masks, reward, episodes) |
| `agent` | `CounterfactualAgent` (policy network, top-k roll-outs), `train_agent` (SAC or PPO), safetensors + JSON |
| `sac`, `ppo` | the two actor-critic trainers |
| `consistency` | `make_tree_consistent`: fine-tunes the policy's first choice towards its distilled tree |
| `distill` | `TreeDistiller` (sklearn tree, DAgger, fidelity), `TreePolicy` (JSON arrays, rules, acting) |
| `greedy` | `greedy_search`: the per-ECG baseline over the same edit space |
| `report` | `Explanation`: edits in words, counterfactual, probabilities, JSON report, overlay PNG |
| `explainer` | `Explainer`, `load_explainer`, `explain` |
| `training` | `train_explainer` (writes ``RUN/explainer/``), `run_split` (a run's data split as ECGs) |

Submodules load on first use: ``from vlm_ecg.explain.edits import apply_edits`` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Edit": "edits",
    "EditError": "edits",
    "BeatFrame": "edits",
    "apply_edits": "edits",
    "SEGMENTS": "edits",
    "ActionSpace": "state",
    "feature_names": "state",
    "BlackBox": "environment",
    "EcgPool": "environment",
    "EditEnv": "environment",
    "EnvConfig": "environment",
    "AgentConfig": "agent",
    "CounterfactualAgent": "agent",
    "train_agent": "agent",
    "ConsistencyConfig": "consistency",
    "make_tree_consistent": "consistency",
    "TreeDistiller": "distill",
    "TreePolicy": "distill",
    "greedy_search": "greedy",
    "Explanation": "report",
    "Explainer": "explainer",
    "explain": "explainer",
    "load_explainer": "explainer",
    "ExplainTrainConfig": "training",
    "train_explainer": "training",
    "run_split": "training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
