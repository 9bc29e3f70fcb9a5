"""Discrete soft actor-critic (Christodoulou 2019, "Soft Actor-Critic for Discrete Action Settings") for the agent.

Off-policy: episodes are collected `n_envs` at a time with actions sampled from the policy, every transition goes
to a replay buffer, and after each environment step `updates_per_step` gradient steps are taken on minibatches of
the whole buffer. Two Q critics (`ActionScorer`s, the minimum is used against over-estimation) regress on
r + gamma * V(s'), V(s') = sum_a' pi(a'|s') (min Q_target(s', a') - alpha log pi(a'|s')) over allowed actions;
target critics follow by Polyak averaging; the actor minimises sum_a pi(a|s) (alpha log pi(a|s) - min Q(s, a));
the temperature alpha is tuned so the policy's entropy stays near `target_entropy_ratio` x log(#allowed actions).
Because each black-box call is reused for many gradient steps, a few thousand calls train the agent, where PPO
(`vlm_ecg.explain.ppo`) needs many more.

Before the first wave, `sweep_ecgs` training positives get every allowed edit tried once from their start state
(one batched call each, at most half the budget) and those transitions seed the buffer. Most flips take one edit, and
a policy that samples a handful of ~280 edits per episode rarely meets the few that flip a confident decision; the
sweep shows the critics those edits from the start. Measured on the default run, 200 positives (bare policy / tree
/ top-4 roll-out validity): 16 000 calls without a sweep 0.70 / 0.50 / 0.81 (635 s); 24 000 with a 40-ECG sweep
0.74 / 0.62 / 0.81 (371 s); 40 000 with an 80-ECG sweep (the default) 0.81 / 0.685 / 0.825 (598 s). Validation tree
fidelity 0.19 without a sweep, 0.41 with either. (Episodes of at most 10 edits then; with the default 20 the same
budget gives top-4 0.895, top-8 0.915.) Sweeping further states along the best swept edit's path (4 states per ECG,
same budget, so 45 ECGs instead of 80) was worse: bare policy 0.67, top-4 0.81.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from torch import nn

from .agent import (
    ActionScorer,
    AgentConfig,
    CounterfactualAgent,
    TrainingLog,
    fit_standardisation,
    masked_logits,
)
from .environment import EditEnv

logger = logging.getLogger(__name__)


class ReplayBuffer:
    """Transitions (s, mask, a, r, s', mask', done) in growing numpy arrays."""

    def __init__(self):
        self.parts: dict[str, list[np.ndarray]] = {k: [] for k in ("s", "m", "a", "r", "s2", "m2", "done")}
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, **rows: np.ndarray) -> None:
        for key, value in rows.items():
            self.parts[key].append(value)
        self.arrays = {}

    def __len__(self) -> int:
        return sum(len(a) for a in self.parts["a"])

    def sample(self, size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if not self.arrays:
            self.arrays = {k: np.concatenate(v) for k, v in self.parts.items()}
        pick = rng.integers(0, len(self), size=min(size, len(self)))
        return {k: torch.from_numpy(v[pick]) for k, v in self.arrays.items()}


def train_sac(env: EditEnv, config: AgentConfig, train_idx: np.ndarray, progress: bool = True) -> CounterfactualAgent:
    """Discrete SAC training (see the module docstring); `train_idx`: pool ECGs to sample episodes from."""
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    agent = CounterfactualAgent(config, env.config, env.margin_scale)
    actor = agent.net
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        critics = [ActionScorer(len(agent.feature_names), agent.actions, config.hidden_size) for _ in range(2)]
    targets = [copy.deepcopy(c) for c in critics]
    fit_standardisation([actor, *critics, *targets], env.observe(env.start(train_idx))[0])
    log_alpha = torch.tensor([np.log(0.1)], requires_grad=True)
    opt_actor = torch.optim.Adam(actor.parameters(), lr=config.learning_rate)
    opt_critic = torch.optim.Adam([p for c in critics for p in c.parameters()], lr=config.learning_rate)
    opt_alpha = torch.optim.Adam([log_alpha], lr=config.learning_rate)
    buffer = ReplayBuffer()
    log = TrainingLog(env, config, "sac", progress)
    swept, sweep_queries = 0, 0
    if config.sweep_ecgs:
        pick = rng.choice(train_idx, size=min(config.sweep_ecgs, len(train_idx)), replace=False)
        swept = _sweep(env, pick, buffer, budget=config.total_queries // 2)
        sweep_queries = log.spent
        log.advance()
        for _ in range(config.sweep_updates if len(buffer) else 0):
            _update(actor, critics, targets, log_alpha, (opt_actor, opt_critic, opt_alpha),
                    buffer.sample(config.minibatch_size, rng), config)  # fmt: skip
    for wave in range(config.max_waves):
        idx = rng.choice(train_idx, size=config.n_envs, replace=len(train_idx) < config.n_envs)
        ep = env.start(idx)
        ret = np.zeros(len(idx))
        losses: list[dict] = []
        while ep.active.any():
            states, masks = env.observe(ep)
            rows = np.flatnonzero(ep.active)
            actions, _ = agent.act(states, masks, greedy=False, generator=gen)
            rewards = env.step(ep, actions)
            ret += rewards
            next_states, next_masks = env.observe(ep)
            buffer.add(s=states[rows], m=masks[rows], a=actions[rows].astype(np.int64),
                       r=rewards[rows].astype(np.float32), s2=next_states[rows], m2=next_masks[rows],
                       done=(~ep.active[rows]).astype(np.float32))  # fmt: skip
            for _ in range(config.updates_per_step):
                batch = buffer.sample(config.minibatch_size, rng)
                losses.append(_update(actor, critics, targets, log_alpha, (opt_actor, opt_critic, opt_alpha), batch,
                                      config))  # fmt: skip
        mean = {k: float(np.mean([d[k] for d in losses])) for k in losses[0]} if losses else {}
        if log.wave(wave, ep, float(ret.mean()), buffer=len(buffer), **mean):
            break
    actor.eval()
    agent.summary = log.summary(train_idx, transitions=len(buffer), swept_ecgs=swept, sweep_queries=sweep_queries)
    return agent


def _sweep(env: EditEnv, idx: np.ndarray, buffer: ReplayBuffer, budget: int) -> int:
    """Try every allowed edit once from the start state of each ECG in `idx` (one batched model call per ECG) and
    store the transitions, stopping once `budget` model calls are spent (half the training budget: the rest is for
    the agent's own episodes). An untrained policy samples a handful of the ~280 edits per episode; the sweep shows the
    critics, from the start, which single edits flip which ECGs (most flips take one edit), the same experience the
    greedy baseline gathers at its first step. Returns the number of ECGs swept."""
    start, swept = env.blackbox.n_queries, 0
    for i in idx:
        if env.blackbox.n_queries - start >= budget:
            break
        ep = env.start(np.array([i]))
        if not ep.active[0]:
            continue
        swept += 1
        states, masks = env.observe(ep)
        actions, trial, rewards = env.try_every_edit(ep, 0)
        next_states, next_masks = env.observe(trial)
        buffer.add(s=np.repeat(states, len(actions), axis=0), m=np.repeat(masks, len(actions), axis=0),
                   a=actions.astype(np.int64), r=rewards.astype(np.float32), s2=next_states, m2=next_masks,
                   done=(~trial.active).astype(np.float32))  # fmt: skip
    return swept


def _soft_value(logits: torch.Tensor, q: torch.Tensor, masks: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """sum_a pi(a) (q(a) - alpha log pi(a)) over allowed actions, (N,); 0 where nothing is allowed."""
    logp = torch.log_softmax(logits, dim=1)
    return (logp.exp() * (q - alpha * logp)).masked_fill(~masks, 0.0).sum(dim=1)


def _update(actor, critics, targets, log_alpha, optimizers, batch: dict, config: AgentConfig) -> dict:
    opt_actor, opt_critic, opt_alpha = optimizers
    s, m, a, r, s2, m2, done = (batch[k] for k in ("s", "m", "a", "r", "s2", "m2", "done"))
    alpha = log_alpha.exp().detach()
    with torch.no_grad():
        next_logits = masked_logits(actor(s2), m2)
        next_q = torch.min(targets[0](s2), targets[1](s2))
        y = r + config.gamma * (1.0 - done) * _soft_value(next_logits, next_q, m2, alpha)
    critic_loss = sum(((c(s).gather(1, a[:, None]).squeeze(1) - y) ** 2).mean() for c in critics)
    opt_critic.zero_grad()
    critic_loss.backward()
    nn.utils.clip_grad_norm_([p for c in critics for p in c.parameters()], config.max_grad_norm)
    opt_critic.step()

    logits = masked_logits(actor(s), m)
    logp = torch.log_softmax(logits, dim=1)
    prob = logp.exp()
    with torch.no_grad():
        q = torch.min(critics[0](s), critics[1](s))
    actor_loss = (prob * (alpha * logp - q)).masked_fill(~m, 0.0).sum(dim=1).mean()
    opt_actor.zero_grad()
    actor_loss.backward()
    nn.utils.clip_grad_norm_(actor.parameters(), config.max_grad_norm)
    opt_actor.step()

    entropy = -(prob * logp).masked_fill(~m, 0.0).sum(dim=1).detach()
    target_entropy = config.target_entropy_ratio * torch.log(m.sum(dim=1).clamp(min=1).float())
    alpha_loss = (log_alpha * (entropy - target_entropy)).mean()
    opt_alpha.zero_grad()
    alpha_loss.backward()
    opt_alpha.step()

    with torch.no_grad():
        for c, t in zip(critics, targets, strict=True):
            for p, tp in zip(c.parameters(), t.parameters(), strict=True):
                tp.mul_(1 - config.tau).add_(config.tau * p)
    return {"critic_loss": float(critic_loss.detach()), "actor_loss": float(actor_loss.detach()),
            "entropy": float(entropy.mean()), "alpha": float(alpha)}  # fmt: skip
