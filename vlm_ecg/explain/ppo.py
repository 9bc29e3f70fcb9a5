"""PPO (Schulman et al. 2017) with GAE for the counterfactual agent: on-policy, the comparison trainer.

Each wave runs `n_envs` episodes side by side with actions sampled from the policy, then `ppo_epochs` passes of
clipped-surrogate updates (advantages from GAE with a state-value critic, normalised per wave) and an entropy
bonus. Use ``AgentConfig(algorithm="ppo")``.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from .agent import AgentConfig, CounterfactualAgent, TrainingLog, fit_standardisation, masked_logits
from .environment import EditEnv

logger = logging.getLogger(__name__)


class StateValue(nn.Module):
    """V(s): an MLP on the standardised state."""

    def __init__(self, n_features: int, hidden_size: int):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        h = hidden_size
        self.mlp = nn.Sequential(nn.Linear(n_features, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, 1))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.mlp((states - self.feature_mean) / self.feature_std).squeeze(-1)


def gae(rewards: np.ndarray, values: np.ndarray, active: np.ndarray, gamma: float, lam: float):
    """Advantages and returns, (T, N) each; steps after an episode ended are masked by `active`."""
    steps, n = rewards.shape
    adv = np.zeros((steps, n))
    last = np.zeros(n)
    for t in reversed(range(steps)):
        nonterminal = active[t + 1] if t + 1 < steps else np.zeros(n)
        next_value = values[t + 1] * nonterminal if t + 1 < steps else np.zeros(n)
        delta = rewards[t] + gamma * next_value - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last * active[t]
    return adv, (adv + values) * active


def train_ppo(env: EditEnv, config: AgentConfig, train_idx: np.ndarray, progress: bool = True) -> CounterfactualAgent:
    """PPO training (see the module docstring); `train_idx`: pool ECGs to sample episodes from."""
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    agent = CounterfactualAgent(config, env.config, env.margin_scale)
    actor = agent.net
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        critic = StateValue(len(agent.feature_names), config.hidden_size)
    fit_standardisation([actor, critic], env.observe(env.start(train_idx))[0])
    optimizer = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=config.learning_rate)
    log = TrainingLog(env, config, "ppo", progress)
    for wave in range(config.max_waves):
        idx = rng.choice(train_idx, size=config.n_envs, replace=len(train_idx) < config.n_envs)
        ep = env.start(idx)
        buf: dict[str, list] = {k: [] for k in ("states", "masks", "actions", "logp", "values", "rewards", "active")}
        while ep.active.any():
            states, masks = env.observe(ep)
            active = ep.active.copy()
            actions, logp = agent.act(states, masks, greedy=False, generator=gen)
            with torch.no_grad():
                values = critic(torch.from_numpy(states)).numpy()
            rewards = env.step(ep, actions)
            for key, value in zip(buf, (states, masks, actions, logp, values, rewards, active), strict=True):
                buf[key].append(value)
        arr = {k: np.stack(v) for k, v in buf.items()}  # (T, N, ...)
        adv, returns = gae(arr["rewards"], arr["values"], arr["active"].astype(float), config.gamma, config.gae_lambda)
        sel = arr["active"]
        batch = {k: arr[k][sel] for k in ("states", "masks", "actions", "logp")}
        losses = _update(actor, critic, optimizer, batch, adv[sel], returns[sel], config, rng)
        if log.wave(wave, ep, float(arr["rewards"].sum(axis=0).mean()), **losses):
            break
    actor.eval()
    agent.summary = log.summary(train_idx)
    return agent


def _update(actor, critic, optimizer, batch: dict, adv: np.ndarray, returns: np.ndarray, config: AgentConfig,
            rng: np.random.Generator) -> dict:  # fmt: skip
    """Clipped-surrogate PPO epochs over one wave's transitions; returns mean losses."""
    actor.train()
    states = torch.from_numpy(batch["states"])
    masks = torch.from_numpy(batch["masks"])
    actions = torch.from_numpy(batch["actions"]).long()
    old_logp = torch.from_numpy(batch["logp"]).float()
    adv_t = torch.from_numpy(adv).float()
    adv_t = (adv_t - adv_t.mean()) / (adv_t.std() + 1e-8) if len(adv_t) > 1 else adv_t
    ret_t = torch.from_numpy(returns).float()
    totals = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0}
    count = 0
    for _ in range(config.ppo_epochs):
        order = rng.permutation(len(actions))
        for start in range(0, len(actions), config.minibatch_size):
            mb = torch.from_numpy(order[start : start + config.minibatch_size])
            logp_all = torch.log_softmax(masked_logits(actor(states[mb]), masks[mb]), dim=1)
            ratio = torch.exp(logp_all.gather(1, actions[mb, None]).squeeze(1) - old_logp[mb])
            clipped = ratio.clamp(1 - config.clip_range, 1 + config.clip_range)
            policy_loss = -torch.min(ratio * adv_t[mb], clipped * adv_t[mb]).mean()
            entropy = -(logp_all.exp() * logp_all.masked_fill(~masks[mb], 0.0)).sum(dim=1).mean()
            value_loss = ((critic(states[mb]) - ret_t[mb]) ** 2).mean()
            loss = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_([*actor.parameters(), *critic.parameters()], config.max_grad_norm)
            optimizer.step()
            for key, value in (("policy_loss", policy_loss), ("value_loss", value_loss), ("entropy", entropy)):
                totals[key] += float(value.detach())
            count += 1
    actor.eval()
    return {k: v / max(count, 1) for k, v in totals.items()}
