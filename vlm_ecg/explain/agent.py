"""The RL counterfactual agent: an actor-critic over physiological edits, trained with PPO against the black box.

    agent = train_agent(env, AgentConfig(total_queries=5000))     # env: `EditEnv` over training-split positives
    episodes = agent.rollout(env, np.arange(len(env.pool)))       # greedy roll-outs: a few model calls per ECG
    agent.save("runs/default/explainer"); agent = CounterfactualAgent.load("runs/default/explainer")

Algorithm: PPO (Schulman et al. 2017) with GAE (lambda 0.95, gamma 1 on short episodes), clipped surrogate, value
loss and an entropy bonus; separate actor and critic MLPs on the standardised state (`state.feature_names`);
invalid actions are masked to -inf before the softmax. Training runs `n_envs` episodes side by side, so each
environment step is one batched model call; the black-box queries dominate the cost and `total_queries` bounds
them. Explaining a new ECG is a greedy roll-out (argmax of the masked policy): at most `max_steps` model calls.

Files: ``agent.safetensors`` (network weights and the state standardisation) and ``agent.json`` (this config, the
environment config, the margin scale, the action and feature names, a training summary).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..run_folder import write_text_atomic
from .environment import EditEnv, EnvConfig, Episodes
from .state import ActionSpace, feature_names

logger = logging.getLogger(__name__)

AGENT_WEIGHTS = "agent.safetensors"
AGENT_CONFIG = "agent.json"


def _help(text: str, default: object) -> object:
    return field(default=default, metadata={"help": text})


@dataclass
class AgentConfig:
    """PPO training of the agent (the edit space and reward live in `EnvConfig`)."""

    hidden_size: int = _help("width of the actor and critic MLPs", 128)
    n_envs: int = _help("episodes run side by side (one batched model call per step)", 64)
    total_queries: int = _help("black-box queries to spend on training (cache hits are free)", 5000)
    max_waves: int = _help("upper bound on PPO iterations (one wave of n_envs episodes each)", 500)
    learning_rate: float = _help("Adam learning rate", 1e-3)
    ppo_epochs: int = _help("passes over each wave's transitions", 4)
    minibatch_size: int = _help("transitions per gradient step", 64)
    clip_range: float = _help("PPO ratio clip", 0.2)
    gamma: float = _help("discount (episodes are a few steps long)", 1.0)
    gae_lambda: float = _help("GAE lambda", 0.95)
    entropy_coef: float = _help("entropy bonus weight", 0.01)
    value_coef: float = _help("value loss weight", 0.5)
    max_grad_norm: float = _help("gradient clipping", 0.5)
    seed: int = _help("seed of initialisation, episode sampling and action sampling", 0)

    def __post_init__(self) -> None:
        for name in ("hidden_size", "n_envs", "total_queries", "max_waves", "ppo_epochs", "minibatch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class PolicyValueNet(nn.Module):
    """Actor (masked action logits) and critic (state value) MLPs on the standardised state."""

    def __init__(self, n_features: int, n_actions: int, hidden_size: int):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))

        def mlp(out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(n_features, hidden_size), nn.Tanh(), nn.Linear(hidden_size, hidden_size), nn.Tanh(),
                nn.Linear(hidden_size, out),
            )  # fmt: skip

        self.actor, self.critic = mlp(n_actions), mlp(1)
        with torch.no_grad():  # a near-uniform first policy
            self.actor[-1].weight.mul_(0.01)
            self.actor[-1].bias.zero_()

    def forward(self, states: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, F), (N, A) bool -> masked logits (N, A), values (N,)."""
        x = (states - self.feature_mean) / self.feature_std
        logits = self.actor(x).masked_fill(~masks, -1e9)
        return logits, self.critic(x).squeeze(-1)


class CounterfactualAgent:
    """A trained policy over edits, with everything needed to roll it out (see the module docstring).

    Args:
        config: training settings.
        env_config: edit space and reward the agent was trained for.
        margin_scale: the environment's margin scale at training time.
        net: the network (a fresh one when None).
    """

    def __init__(self, config: AgentConfig, env_config: EnvConfig, margin_scale: float = 1.0,
                 net: PolicyValueNet | None = None, summary: dict | None = None):  # fmt: skip
        self.config, self.env_config, self.margin_scale = config, env_config, float(margin_scale)
        self.actions = ActionSpace(env_config.levels_mv)
        self.feature_names = feature_names()
        if net is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                net = PolicyValueNet(len(self.feature_names), len(self.actions), config.hidden_size)
        self.net = net.eval()
        self.summary = dict(summary or {})

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, states: np.ndarray, masks: np.ndarray, greedy: bool = True,
            generator: torch.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """(actions (N,), log-probabilities (N,), values (N,)); rows without a valid action get action 0."""
        logits, values = self.net(torch.from_numpy(states), torch.from_numpy(masks))
        if greedy:
            actions = logits.argmax(dim=1)
        else:
            actions = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator).squeeze(1)
        logp = torch.log_softmax(logits, dim=1).gather(1, actions[:, None]).squeeze(1)
        return actions.numpy(), logp.numpy(), values.numpy()

    def policy(self, states: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Greedy actions (N,): the deterministic policy used to explain and to distil."""
        return self.act(states, masks, greedy=True)[0]

    def rollout(self, env: EditEnv, idx: np.ndarray) -> Episodes:
        """Greedy episodes on pool ECGs `idx` (all side by side)."""
        return run_episodes(env, idx, self.policy)[0]

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path) -> Path:
        """Write ``agent.safetensors`` and ``agent.json`` into `directory` (each atomically)."""
        import os
        import tempfile

        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{AGENT_WEIGHTS}.", suffix=".tmp")
        os.close(fd)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, tmp)
        os.replace(tmp, directory / AGENT_WEIGHTS)
        meta = {
            "format": "vlm_ecg-explainer-agent/1",
            "agent": asdict(self.config),
            "env": asdict(self.env_config),
            "margin_scale": self.margin_scale,
            "feature_names": self.feature_names,
            "actions": [self.actions.name(a) for a in range(len(self.actions))],
            "training": self.summary,
        }
        write_text_atomic(directory / AGENT_CONFIG, json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> CounterfactualAgent:
        """Read an agent written by `save`.

        Raises:
            FileNotFoundError: the folder holds no agent (train one with ``vlm-ecg explain-train RUN``).
        """
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / AGENT_CONFIG).is_file() or not (directory / AGENT_WEIGHTS).is_file():
            raise FileNotFoundError(
                f"{directory}: no trained explainer ({AGENT_CONFIG} + {AGENT_WEIGHTS}); "
                "train one with `vlm-ecg explain-train RUN`"
            )
        meta = json.loads((directory / AGENT_CONFIG).read_text())
        env = meta["env"]
        env["levels_mv"] = tuple(env["levels_mv"])
        agent = cls(AgentConfig(**meta["agent"]), EnvConfig(**env), meta["margin_scale"], summary=meta["training"])
        if meta["feature_names"] != agent.feature_names:
            raise ValueError(f"{directory}: the agent was trained on other state features; retrain it")
        agent.net.load_state_dict(load_file(str(directory / AGENT_WEIGHTS)))
        agent.net.eval()
        return agent


def run_episodes(env: EditEnv, idx: np.ndarray, policy) -> tuple[Episodes, dict]:
    """Roll `policy` (states, masks -> actions) out on pool ECGs `idx`; returns the episodes and the visited
    states: ``{"states": (T, F), "masks": (T, A), "actions": (T,), "episode": (T,)}``."""
    ep = env.start(idx)
    seen: dict[str, list] = {"states": [], "masks": [], "actions": [], "episode": []}
    while ep.active.any():
        states, masks = env.observe(ep)
        actions = policy(states, masks)
        rows = np.flatnonzero(ep.active)
        for key, value in (
            ("states", states),
            ("masks", masks),
            ("actions", actions),
            ("episode", np.arange(len(idx))),
        ):
            seen[key].append(value[rows])
        env.step(ep, actions)
    n_features, n_actions = len(feature_names()), len(env.actions)
    trajectory = {
        "states": np.concatenate(seen["states"]) if seen["states"] else np.zeros((0, n_features), np.float32),
        "masks": np.concatenate(seen["masks"]) if seen["masks"] else np.zeros((0, n_actions), bool),
        "actions": np.concatenate(seen["actions"]).astype(np.int64) if seen["actions"] else np.zeros(0, np.int64),
        "episode": np.concatenate(seen["episode"]) if seen["episode"] else np.zeros(0, np.int64),
    }
    return ep, trajectory


def _gae(rewards, values, active, gamma, lam) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns, (T, N) each; steps after an episode ended are masked by `active`."""
    steps, n = rewards.shape
    adv = np.zeros((steps, n))
    last = np.zeros(n)
    for t in reversed(range(steps)):
        next_value = values[t + 1] * active[t + 1] if t + 1 < steps else np.zeros(n)
        delta = rewards[t] + gamma * next_value - values[t]
        nonterminal = active[t + 1] if t + 1 < steps else np.zeros(n)
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last * active[t]
    return adv, (adv + values) * active


def train_agent(env: EditEnv, config: AgentConfig | None = None, train_idx: np.ndarray | None = None,
                progress: bool = True) -> CounterfactualAgent:  # fmt: skip
    """Train an agent with PPO on the positives of `env`'s pool (or on `train_idx`).

    Args:
        env: the environment (its pool: ECGs of the training split).
        config: PPO settings.
        train_idx: pool indices to sample episodes from (default: every ECG the model calls positive).
        progress: show a tqdm bar over the query budget.

    Raises:
        ValueError: no positive ECG to train on.
    """
    from tqdm.auto import tqdm

    config = config or AgentConfig()
    if train_idx is None:
        train_idx = np.flatnonzero(env.pool.prob0 >= env.blackbox.threshold)
    if len(train_idx) == 0:
        raise ValueError("the model calls none of the training ECGs positive: nothing to explain")
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    agent = CounterfactualAgent(config, env.config, env.margin_scale)
    net = agent.net
    start_states = env.observe(env.start(train_idx))[0]
    net.feature_mean.copy_(torch.from_numpy(start_states.mean(axis=0)))
    net.feature_std.copy_(torch.from_numpy(np.maximum(start_states.std(axis=0), 1e-3)))
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    q0, t0 = env.blackbox.n_queries, time.perf_counter()
    history = []
    bar = tqdm(total=config.total_queries, desc="explainer PPO", unit="query", disable=not progress)
    for wave in range(config.max_waves):
        idx = rng.choice(train_idx, size=config.n_envs, replace=len(train_idx) < config.n_envs)
        ep = env.start(idx)
        buf: dict[str, list] = {k: [] for k in ("states", "masks", "actions", "logp", "values", "rewards", "active")}
        while ep.active.any():
            states, masks = env.observe(ep)
            active = ep.active.copy()
            net.eval()
            actions, logp, values = agent.act(states, masks, greedy=False, generator=gen)
            rewards = env.step(ep, actions)
            for key, value in zip(buf, (states, masks, actions, logp, values, rewards, active), strict=True):
                buf[key].append(value)
        arr = {k: np.stack(v) for k, v in buf.items()}  # (T, N, ...)
        adv, returns = _gae(
            arr["rewards"], arr["values"], arr["active"].astype(float), config.gamma, config.gae_lambda
        )
        sel = arr["active"]
        loss_info = _ppo_update(net, optimizer, {k: arr[k][sel] for k in ("states", "masks", "actions", "logp")},
                                adv[sel], returns[sel], config, rng)  # fmt: skip
        spent = env.blackbox.n_queries - q0
        stats = {
            "wave": wave,
            "queries": spent,
            "return": float(arr["rewards"].sum(axis=0).mean()),
            "flip_rate": float(ep.flipped.mean()),
            "edits": float((np.abs(ep.edits) > 0).sum(axis=1).mean()),
            "total_mv": float(np.abs(ep.edits).sum(axis=1).mean()),
            **loss_info,
        }
        history.append(stats)
        bar.update(max(0, min(spent, config.total_queries) - bar.n))
        bar.set_postfix(flip=f"{stats['flip_rate']:.2f}", ret=f"{stats['return']:.2f}", mv=f"{stats['total_mv']:.2f}")
        if spent >= config.total_queries:
            break
    bar.close()
    agent.net.eval()
    agent.summary = {
        "seconds": time.perf_counter() - t0,
        "queries": env.blackbox.n_queries - q0,
        "waves": len(history),
        "train_ecgs": int(len(train_idx)),
        "history": history,
    }
    last = history[-1]["flip_rate"] if history else 0.0
    logger.info("explainer agent: %d waves, %d queries, %.0f s, last flip rate %.2f", len(history),
                agent.summary["queries"], agent.summary["seconds"], last)  # fmt: skip
    return agent


def _ppo_update(net: PolicyValueNet, optimizer, batch: dict, adv: np.ndarray, returns: np.ndarray,
                config: AgentConfig, rng: np.random.Generator) -> dict:  # fmt: skip
    """Clipped-surrogate PPO epochs over one wave's transitions; returns mean losses."""
    net.train()
    states = torch.from_numpy(batch["states"])
    masks = torch.from_numpy(batch["masks"])
    actions = torch.from_numpy(batch["actions"]).long()
    old_logp = torch.from_numpy(batch["logp"]).float()
    adv_t = torch.from_numpy(adv).float()
    adv_t = (adv_t - adv_t.mean()) / (adv_t.std() + 1e-8) if len(adv_t) > 1 else adv_t
    ret_t = torch.from_numpy(returns).float()
    n = len(actions)
    totals = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0}
    count = 0
    for _ in range(config.ppo_epochs):
        order = rng.permutation(n)
        for start in range(0, n, config.minibatch_size):
            mb = torch.from_numpy(order[start : start + config.minibatch_size])
            logits, values = net(states[mb], masks[mb])
            logp_all = torch.log_softmax(logits, dim=1)
            logp = logp_all.gather(1, actions[mb, None]).squeeze(1)
            ratio = torch.exp(logp - old_logp[mb])
            surrogate = torch.min(
                ratio * adv_t[mb], ratio.clamp(1 - config.clip_range, 1 + config.clip_range) * adv_t[mb]
            )
            probs = logp_all.exp()
            entropy = -(probs * logp_all.masked_fill(~masks[mb], 0.0)).sum(dim=1).mean()
            value_loss = ((values - ret_t[mb]) ** 2).mean()
            loss = -surrogate.mean() + config.value_coef * value_loss - config.entropy_coef * entropy
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), config.max_grad_norm)
            optimizer.step()
            totals["policy_loss"] += float(-surrogate.mean())
            totals["value_loss"] += float(value_loss)
            totals["entropy"] += float(entropy)
            count += 1
    net.eval()
    return {k: v / max(count, 1) for k, v in totals.items()}
