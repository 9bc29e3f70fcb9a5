"""Train a run's explainer: the RL agent (SAC) on training-split positives, its first choice made consistent with a
depth-5 tree (`consistency`, on the same positives), then the tree distilled on validation positives.

    vlm-ecg explain-train runs/default                   # -> runs/default/explainer/
    path = train_explainer("runs/default", ExplainTrainConfig(), AgentConfig(total_queries=5000))

    runs/NAME/explainer/
      agent.safetensors, agent.json      the policy (weights + state standardisation; configs, action names)
      tree.json                          the distilled tree as plain arrays (no pickle)
      rules.txt                          its IF ... THEN rules
      tree.png                           its picture
      distill_report.json                fidelity, validity, training curve, data and timing

The folder is written beside the run and renamed into place, so an interrupted training leaves the previous
explainer intact.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..ecg import Ecg
from ..run_folder import _atomic_dir, _commit, final_dir
from .agent import AgentConfig, train_agent
from .consistency import ConsistencyConfig, make_tree_consistent
from .distill import TreeDistiller
from .environment import BlackBox, EcgPool, EditEnv, EnvConfig, margin_scale
from .explainer import DISTILL_REPORT, EXPLAINER_DIR, RULES_FILE, TREE_FILE, TREE_PNG

logger = logging.getLogger(__name__)


def _help(text: str, default: object) -> object:
    return field(default=default, metadata={"help": text})


@dataclass
class ExplainTrainConfig:
    """Which data the explainer is trained and distilled on, and the tree's size."""

    n_train_ecgs: int = _help("training-split ECGs to consider (labelled positives first); 0 = all", 800)
    n_val_ecgs: int = _help("validation-split ECGs to consider for distillation (positives first); 0 = all", 400)
    max_depth: int = _help("depth of the distilled tree (<= 5)", 5)
    min_samples_leaf: int = _help("smallest leaf of the tree, in states", 10)
    dagger_rounds: int = _help("DAgger re-roll-outs of the tree during distillation", 1)
    seed: int = _help("ECG selection and the distillation split", 0)

    def __post_init__(self) -> None:
        if not 1 <= self.max_depth <= 5:
            raise ValueError(f"max_depth must be 1..5, got {self.max_depth}")


@dataclass
class SplitEcgs:
    """ECGs of one split of a run's data, with what the explainer and the benchmark need."""

    ecgs: list[Ecg]
    strata: np.ndarray
    triage: np.ndarray
    culprit: list[str]


def run_split(run_dir: str | Path, split: str, n: int = 0, positives_first: bool = True, seed: int = 0,
              predictor=None) -> SplitEcgs:  # fmt: skip
    """`n` ECGs (0 = all) of the run's `split` ("train", "val", "test"), rebuilt from its train_config.yaml.

    With `positives_first`, rows labelled positive come first (in a seeded random order), then the others: the
    explainer needs ECGs the model calls positive, and those are mostly labelled positives.
    """
    from ..labels import CULPRITS
    from ..train_config import load_train_config
    from ..train_data import load_splits

    run_dir = Path(run_dir)
    config_path = run_dir / "train_config.yaml"
    if not config_path.is_file():
        config_path = final_dir(run_dir) / "train_config.yaml"
    config = load_train_config(["--config", str(config_path)])
    data = load_splits(config, progress=False)[split]
    rng = np.random.default_rng(seed)
    triage = np.asarray(data["triage"])
    order = rng.permutation(len(data))
    if positives_first:
        order = np.concatenate([order[triage[order] == 1], order[triage[order] != 1]])
    rows = np.sort(order[:n] if n else order)
    subset = data.select(rows.tolist())
    strata = predictor.strata_of_rows(subset) if predictor is not None else np.full(len(rows), -1)
    ecgs = [
        Ecg(np.asarray(r["signal"], dtype=np.float32), float(r["fs"]), {"id": r["id"], "source": r["id"]})
        for r in subset
    ]
    culprit = [CULPRITS[c] if 0 <= c < len(CULPRITS) else "" for c in subset["culprit"]]
    return SplitEcgs(ecgs, np.asarray(strata), np.asarray(subset["triage"]), culprit)


def train_explainer(run_dir: str | Path, config: ExplainTrainConfig | None = None,
                    agent_config: AgentConfig | None = None, env_config: EnvConfig | None = None,
                    predictor=None, progress: bool = True,
                    consistency: ConsistencyConfig | None = None) -> Path:  # fmt: skip
    """Train the agent, make it tree-consistent, distil the tree and write ``RUN/explainer/`` (see the module
    docstring).

    Raises:
        FileNotFoundError: no trained model in `run_dir`.
        ValueError: the model calls none of the selected training ECGs positive.
    """
    from ..predict import Predictor

    config, agent_config, env_config, consistency = (
        config or ExplainTrainConfig(),
        agent_config or AgentConfig(),
        env_config or EnvConfig(),
        consistency or ConsistencyConfig(),
    )
    run_dir = Path(run_dir)
    predictor = predictor or Predictor.from_pretrained(run_dir)
    start = time.perf_counter()
    blackbox = BlackBox(predictor)

    train = run_split(run_dir, "train", config.n_train_ecgs, seed=config.seed, predictor=predictor)
    pool = EcgPool.build(train.ecgs, blackbox, train.strata, env_config.limb_policy)
    scale = margin_scale(pool.prob0, blackbox.threshold)
    env = EditEnv(pool, blackbox, env_config, scale)
    positives = np.flatnonzero(pool.prob0 >= blackbox.threshold)
    logger.info("explainer: %d of %d training ECGs predicted positive; margin scale %.3g logit", len(positives),
                len(pool), scale)  # fmt: skip
    agent = train_agent(env, agent_config, positives, progress=progress)
    distiller = TreeDistiller(config.max_depth, config.min_samples_leaf, config.dagger_rounds, seed=config.seed)
    # training positives only: the held-out validation ECGs that measure fidelity stay unseen
    agent.summary["consistency"] = make_tree_consistent(agent, [(env, positives)], consistency, distiller,
                                                        seed=agent_config.seed)  # fmt: skip

    val = run_split(run_dir, "val", config.n_val_ecgs, seed=config.seed, predictor=predictor)
    val_pool = EcgPool.build(val.ecgs, blackbox, val.strata, env_config.limb_policy)
    val_env = EditEnv(val_pool, blackbox, env_config, scale)
    val_pos = np.flatnonzero(val_pool.prob0 >= blackbox.threshold)
    distiller.fit(agent, val_env, val_pos, extra=[(env, positives)])

    out = run_dir / EXPLAINER_DIR
    tmp = _atomic_dir(out)
    agent.save(tmp)
    distiller.tree_.save(tmp / TREE_FILE)
    (tmp / RULES_FILE).write_text(distiller.tree_.rules() + "\n")
    distiller.plot(tmp / TREE_PNG)
    report = {
        "threshold": blackbox.threshold,
        "margin_scale": scale,
        "train": {"ecgs": len(pool), "predicted_positive": int(len(positives))},
        "val": {"ecgs": len(val_pool), "predicted_positive": int(len(val_pos))},
        "distill": distiller.report_,
        "agent_training": {k: v for k, v in agent.summary.items() if k != "history"},
        "history": agent.summary.get("history", []),
        "configs": {
            "train": asdict(config),
            "agent": asdict(agent_config),
            "env": asdict(env_config),
            "consistency": asdict(consistency),
        },
        "queries": blackbox.n_queries,
        "query_seconds": blackbox.seconds,
        "seconds": time.perf_counter() - start,
    }
    (tmp / DISTILL_REPORT).write_text(json.dumps(report, indent=1))
    _commit(tmp, out)
    logger.info("explainer written to %s (%.0f s, %d model calls)", out, report["seconds"], blackbox.n_queries)
    return out
