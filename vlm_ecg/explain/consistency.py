"""Tree-consistency fine-tuning: the agent's first choice moves to the edit its distilled tree would make.

    history = make_tree_consistent(agent, [(env, train_positives)], ConsistencyConfig(rounds=3))

Why: a policy trained by SAC over dozens of (target, segment, direction) classes picks among near-equal edits by
fine differences of the state ("lower the inferior ST" and "raise the lateral ST" move a dipole-linked limb-lead ECG
almost alike), so no depth-5 tree agrees with it on more than about half of its states, and rules that agree half
the time do not explain it. Each round (co-distillation, cf. policy distillation with DAgger): roll the agent out
on the training positives, fit a depth-limited tree to its edits (`TreeDistiller.fit_tree`), and train the policy
network on all the states seen so far to take the tree's action wherever the agent's own logit advantage over it is
below `tolerance` (nats; None: everywhere), and its own action elsewhere. The targets are soft: the frozen RL
policy's logits with the wanted action raised `margin` nats above the best, so the ranking beyond the first choice
keeps what RL learnt, which the top-k roll-out (`CounterfactualAgent.rollout`) uses (hard targets, plain
cross-entropy, flattened that ranking and cost 2-3 points of top-8 validity on the default run).

No model query is spent beyond the roll-outs (the labels come from the networks), and the held-out ECGs on which
fidelity is reported are never trained on.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .agent import CounterfactualAgent, masked_logits, run_episodes

logger = logging.getLogger(__name__)


def _help(text: str, default: object) -> object:
    return field(default=default, metadata={"help": text})


@dataclass
class ConsistencyConfig:
    """Rounds of tree-consistency fine-tuning (0 = the agent as RL left it)."""

    rounds: int = _help("roll-out / fit-tree / fine-tune rounds", 4)
    tolerance: float | None = _help(
        "take the tree's action where the agent prefers its own by less than this many nats (None: always)", None
    )
    margin: float | None = _help(
        "soft targets: the RL policy's own logits with the wanted action raised this many nats above the best, so "
        "the ranking of the other edits (what the top-k roll-out tries next) is kept (None: hard targets)",
        5.0,
    )
    steps: int = _help("gradient steps per round", 300)
    batch_size: int = _help("states per gradient step", 256)
    learning_rate: float = _help("Adam learning rate", 1e-3)

    def __post_init__(self) -> None:
        if self.rounds < 0 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("rounds must be >= 0, steps and batch_size >= 1")
        if self.tolerance is not None and not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0 nats or None, got {self.tolerance}")


def make_tree_consistent(agent: CounterfactualAgent, sources: list[tuple], config: ConsistencyConfig,
                         distiller, seed: int = 0) -> list[dict]:  # fmt: skip
    """Fine-tune `agent.net` in place (see the module docstring); returns one summary per round.

    Args:
        agent: the trained agent.
        sources: (env, pool indices) pairs whose roll-outs are trained on (training-split positives).
        config: rounds, tolerance and optimiser.
        distiller: a `TreeDistiller` (its depth and leaf size shape the tree the agent moves towards).
        seed: minibatch order.
    """
    history: list[dict] = []
    if config.rounds == 0:
        return history
    net: nn.Module = agent.net
    reference = copy.deepcopy(net).eval()  # the RL policy, whose ranking of the other edits the soft targets keep
    optimiser = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    gen = torch.Generator().manual_seed(seed)
    seen_states, seen_masks, targets = [], [], []
    for round_ in range(config.rounds):
        visited = [run_episodes(env, np.asarray(idx), agent.policy)[1] for env, idx in sources if len(idx)]
        states = np.concatenate([v["states"] for v in visited])
        masks = np.concatenate([v["masks"] for v in visited])
        if len(states) == 0:
            break
        own = np.concatenate([v["actions"] for v in visited])
        tree = distiller.fit_tree(states, masks, own, agent.feature_names, agent.actions)[0]
        wanted = tree.act(states, masks)
        with torch.no_grad():
            logits = masked_logits(net(torch.from_numpy(states)), torch.from_numpy(masks)).numpy()
        rows = np.arange(len(states))
        advantage = logits[rows, own] - logits[rows, wanted]
        adopt = advantage < (np.inf if config.tolerance is None else config.tolerance)
        seen_states.append(states)
        seen_masks.append(masks)
        targets.append(np.where(adopt, wanted, own))
        x, m, y = (torch.from_numpy(np.concatenate(z)) for z in (seen_states, seen_masks, targets))
        y = y.long()
        soft = None
        if config.margin is not None:
            with torch.no_grad():
                teacher = masked_logits(reference(x), m)
                best = teacher.max(dim=1).values
                teacher[torch.arange(len(y)), y] = best + config.margin
                soft = torch.softmax(teacher, dim=1)
        net.train()
        for _ in range(config.steps):
            batch = torch.randint(0, len(x), (min(config.batch_size, len(x)),), generator=gen)
            logits = masked_logits(net(x[batch]), m[batch])
            if soft is None:
                loss = nn.functional.cross_entropy(logits, y[batch])
            else:
                loss = -(soft[batch] * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        net.eval()
        n_levels = len(agent.actions.levels_mv)
        history.append({
            "round": round_,
            "states": int(len(states)),
            "tree_agreement_before": float((wanted // n_levels == own // n_levels).mean()),
            "adopted": float((adopt & (wanted != own)).mean()),
            "loss": float(loss.item()),
        })  # fmt: skip
        logger.info("tree consistency round %d: %s", round_, history[-1])
    return history
