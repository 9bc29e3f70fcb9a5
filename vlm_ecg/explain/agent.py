"""The RL counterfactual agent: a policy over physiological edits, trained against the black box.

    agent = train_agent(env, AgentConfig(total_queries=40000))     # env: `EditEnv` over training-split positives
    episodes = agent.rollout(env, np.arange(len(env.pool)))       # greedy roll-outs: a few model calls per ECG
    agent.save("runs/default/explainer"); agent = CounterfactualAgent.load("runs/default/explainer")

Two standard actor-critic trainers share the network and the environment:

- ``"sac"`` (default, `vlm_ecg.explain.sac`): discrete soft actor-critic (Christodoulou 2019) with twin Q critics,
  target networks, automatic entropy temperature and a replay buffer. Off-policy: every model call is reused for
  many gradient steps, which is what makes a few thousand calls enough.
- ``"ppo"`` (`vlm_ecg.explain.ppo`): PPO with GAE (on-policy). Its trust region moves a near-uniform policy over
  hundreds of actions slowly, so it needs many more model calls for the same validity; kept for comparison.

Every network is an `ActionScorer`: one score per action computed from the action's own features, so what is learnt
about one edit carries over to its neighbours (other step sizes, the other direction, reciprocal leads). Explaining
a new ECG is a greedy roll-out (argmax of the masked policy): at most `max_steps` model calls.

Files: ``agent.safetensors`` (the policy network and the state standardisation) and ``agent.json`` (this config, the
environment config, the margin scale, the action and feature names, a training summary).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..run_folder import write_text_atomic
from .environment import EditEnv, EnvConfig, Episodes
from .state import SLOTS, ActionSpace, feature_names, fixed_scales

logger = logging.getLogger(__name__)

AGENT_WEIGHTS = "agent.safetensors"
AGENT_CONFIG = "agent.json"
ALGORITHMS = ("sac", "ppo")


def _help(text: str, default: object) -> object:
    return field(default=default, metadata={"help": text})


@dataclass
class AgentConfig:
    """Training of the agent (the edit space and reward live in `EnvConfig`)."""

    algorithm: str = _help("'sac' (discrete soft actor-critic, off-policy) or 'ppo' (PPO + GAE)", "sac")
    hidden_size: int = _help("width of the state embedding", 64)
    n_envs: int = _help("episodes run side by side (one batched model call per step)", 32)
    total_queries: int = _help("black-box queries to spend on training, sweep included (cache hits are free)", 40000)
    max_waves: int = _help("upper bound on waves of n_envs episodes", 1000)
    learning_rate: float = _help("Adam learning rate", 1e-3)
    minibatch_size: int = _help("transitions per gradient step", 128)
    gamma: float = _help("discount (episodes are a few steps long)", 1.0)
    max_grad_norm: float = _help("gradient clipping", 1.0)
    updates_per_step: int = _help("sac: gradient steps per environment step of the n_envs episodes", 8)
    sweep_ecgs: int = _help(
        "sac: training positives whose start state is swept before the first wave (every allowed edit tried once, "
        "one batched call per ECG) into the replay buffer: exhaustive first-step experience",
        80,
    )
    sweep_updates: int = _help("sac: gradient steps on the swept transitions before the first wave", 500)
    tau: float = _help("sac: Polyak factor of the target critics", 0.05)
    target_entropy_ratio: float = _help("sac: target policy entropy as a share of log(#allowed actions)", 0.3)
    ppo_epochs: int = _help("ppo: passes over each wave's transitions", 4)
    clip_range: float = _help("ppo: ratio clip", 0.2)
    gae_lambda: float = _help("ppo: GAE lambda", 0.95)
    entropy_coef: float = _help("ppo: entropy bonus weight", 0.01)
    value_coef: float = _help("ppo: value loss weight", 0.5)
    seed: int = _help("seed of initialisation, episode sampling and action sampling", 0)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        for name in ("hidden_size", "n_envs", "total_queries", "max_waves", "ppo_epochs", "minibatch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class ActionScorer(nn.Module):
    """One score per action (policy logits or Q values) on the standardised state.

    score(s, a) = h(s) . E(a) + U(a) . dyn(s, a) + b(a): h is an MLP embedding of the state; E, U and b are linear
    in the action's descriptors (target, segment, direction, size: `ActionSpace.descriptors`); dyn(s, a) is what the
    state says about the slot the action edits (its current value and the edit so far, each also times the
    direction; for a territory, the lead it would edit), so a rule like "lower the ST of the lead whose ST is
    highest" is one weight shared by every lead. Cost: an (N, H) x (H, A) product, cheap enough for many gradient
    steps per model call.
    """

    def __init__(self, n_features: int, actions: ActionSpace, hidden_size: int, init_scale: float = 1.0):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.register_buffer("descriptors", torch.from_numpy(actions.descriptors()).float())  # (A, K)
        self.register_buffer("members", torch.from_numpy(actions.members).long())  # (A, W) slots, -1 padding
        self.register_buffer("sign", torch.from_numpy(actions.sign).float())  # (A,)
        h, k = hidden_size, self.descriptors.shape[1]
        self.state_embed = nn.Sequential(nn.Linear(n_features, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh())
        self.action_embed = nn.Linear(k, h)  # E(a)
        self.slot_weights = nn.Linear(k, 4)  # U(a)
        self.action_bias = nn.Linear(k, 1)  # b(a)
        with torch.no_grad():
            for layer in (self.action_embed, self.slot_weights, self.action_bias):
                layer.weight.mul_(init_scale)
                layer.bias.mul_(init_scale)

    def edited_slots(self, states: torch.Tensor) -> torch.Tensor:
        """(N, A) the slot each action would edit (`ActionSpace.resolve` without the mask: a territory's most
        extreme lead the other way)."""
        members = self.members.clamp(min=0)
        key = -self.sign[:, None] * states[:, members]  # (N, A, W) raw measurements: highest first when lowering
        key = key.masked_fill((self.members < 0)[None], -torch.inf)
        return members[None].expand(len(states), -1, -1).gather(2, key.argmax(dim=2, keepdim=True)).squeeze(2)

    def standardise(self, states: torch.Tensor) -> torch.Tensor:
        return (states - self.feature_mean) / self.feature_std

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(N, F) raw states -> (N, A) scores."""
        x = self.standardise(states)
        n_slots = len(SLOTS)
        slot = self.edited_slots(states)
        amp, edit = x.gather(1, slot), x.gather(1, n_slots + slot)  # (N, A) each: the edited slot's value, edit so far
        dyn = torch.stack([amp, edit, amp * self.sign, edit * self.sign], dim=-1)  # (N, A, 4)
        d = self.descriptors
        interaction = self.state_embed(x) @ self.action_embed(d).T  # (N, H) @ (H, A) -> (N, A)
        return interaction + (dyn * self.slot_weights(d)[None]).sum(-1) + self.action_bias(d).squeeze(-1)[None]


def masked_logits(scores: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return scores.masked_fill(~masks, -1e9)


class CounterfactualAgent:
    """A trained policy over edits, with everything needed to roll it out (see the module docstring).

    Args:
        config: training settings.
        env_config: edit space and reward the agent was trained for.
        margin_scale: the environment's margin scale at training time.
        net: the policy network (a fresh one when None).
        summary: training summary (saved in agent.json).
    """

    def __init__(self, config: AgentConfig, env_config: EnvConfig, margin_scale: float = 1.0,
                 net: ActionScorer | None = None, summary: dict | None = None):  # fmt: skip
        self.config, self.env_config, self.margin_scale = config, env_config, float(margin_scale)
        self.actions = ActionSpace(env_config.levels_mv, env_config.targets)
        self.feature_names = feature_names()
        if net is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                net = ActionScorer(len(self.feature_names), self.actions, config.hidden_size, init_scale=0.01)
        self.net = net.eval()
        self.summary = dict(summary or {})

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, states: np.ndarray, masks: np.ndarray, greedy: bool = True,
            generator: torch.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(actions (N,), log-probabilities (N,)); rows without a valid action get action 0."""
        logits = masked_logits(self.net(torch.from_numpy(states)), torch.from_numpy(masks))
        if greedy:
            actions = logits.argmax(dim=1)
        else:
            actions = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator).squeeze(1)
        logp = torch.log_softmax(logits, dim=1).gather(1, actions[:, None]).squeeze(1)
        return actions.numpy(), logp.numpy()

    def policy(self, states: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Greedy actions (N,): the deterministic policy used to explain and to distil."""
        return self.act(states, masks, greedy=True)[0]

    def rollout(self, env: EditEnv, idx: np.ndarray, top_k: int = 1, seen: dict | None = None) -> Episodes:
        """Episodes on pool ECGs `idx` (all side by side).

        Args:
            top_k: 1 = the greedy policy (one model call per step). k > 1: at each step the policy's k best allowed
                edits are tried in one batched model call and the one with the best reward is kept (k calls per
                step, still far fewer than a search over every edit).
            seen: when given, the visited states, their masks and the actions taken are written into it as
                arrays (``"states"``, ``"masks"``, ``"actions"``; see `run_episodes`).
        """
        if top_k <= 1:
            ep, visited = run_episodes(env, idx, self.policy)
            if seen is not None:
                seen.update({k: visited[k] for k in ("states", "masks", "actions")})
            return ep
        ep = env.start(idx)
        steps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        while ep.active.any():
            states, masks = env.observe(ep)
            rows = np.flatnonzero(ep.active)
            with torch.no_grad():
                logits = masked_logits(self.net(torch.from_numpy(states[rows])), torch.from_numpy(masks[rows]))
            k = min(top_k, logits.shape[1])
            top = logits.topk(k, dim=1).indices.numpy()  # (R, k)
            allowed = np.take_along_axis(masks[rows], top, axis=1)
            top = np.where(allowed, top, top[:, :1])  # fewer than k allowed: repeat the best (a cache hit)
            trial = ep.take(np.repeat(rows, k))
            rewards = env.step(trial, top.reshape(-1)).reshape(len(rows), k)  # one batched model call
            best = np.where(allowed, rewards, -np.inf).argmax(axis=1)
            actions = np.zeros(len(ep.idx), dtype=np.int64)
            actions[rows] = top[np.arange(len(rows)), best]
            steps.append((states[rows], masks[rows], actions[rows]))
            env.step(ep, actions)  # answered from the cache
        if seen is not None:
            empty = (np.zeros((0, len(self.feature_names)), np.float32), np.zeros((0, len(env.actions)), bool),
                     np.zeros(0, np.int64))  # fmt: skip
            for k, key in enumerate(("states", "masks", "actions")):
                seen[key] = np.concatenate([step[k] for step in steps]) if steps else empty[k]
        return ep

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path) -> Path:
        """Write ``agent.safetensors`` and ``agent.json`` into `directory` (each atomically)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{AGENT_WEIGHTS}.", suffix=".tmp")
        os.close(fd)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, tmp)
        os.replace(tmp, directory / AGENT_WEIGHTS)
        meta = {
            "format": "vlm_ecg-explainer-agent/3",
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
            ValueError: the files are of another format or state layout.
        """
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / AGENT_CONFIG).is_file() or not (directory / AGENT_WEIGHTS).is_file():
            raise FileNotFoundError(
                f"{directory}: no trained explainer ({AGENT_CONFIG} + {AGENT_WEIGHTS}); "
                "train one with `vlm-ecg explain-train RUN`"
            )
        meta = json.loads((directory / AGENT_CONFIG).read_text())
        if meta.get("format") != "vlm_ecg-explainer-agent/3":
            raise ValueError(f"{directory}: explainer of format {meta.get('format')!r}; retrain it")
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
    episode = np.arange(len(idx))
    while ep.active.any():
        states, masks = env.observe(ep)
        actions = policy(states, masks)
        rows = np.flatnonzero(ep.active)
        for key, value in (("states", states), ("masks", masks), ("actions", actions), ("episode", episode)):
            seen[key].append(value[rows])
        env.step(ep, actions)
    n_features, n_actions = len(feature_names()), len(env.actions)
    empty = {"states": np.zeros((0, n_features), np.float32), "masks": np.zeros((0, n_actions), bool),
             "actions": np.zeros(0, np.int64), "episode": np.zeros(0, np.int64)}  # fmt: skip
    trajectory = {k: np.concatenate(v) if v else empty[k] for k, v in seen.items()}
    trajectory["actions"] = trajectory["actions"].astype(np.int64)
    return ep, trajectory


class TrainingLog:
    """What both trainers keep per wave of episodes: the history, a progress bar over the query budget, and the
    training summary saved in agent.json. Queries are counted from construction on.

    Args:
        env: the environment (its black box counts the queries).
        config: the budget (`total_queries`).
        name: the algorithm, for the bar and the summary.
        progress: show the bar.
    """

    def __init__(self, env: EditEnv, config: AgentConfig, name: str, progress: bool):
        from tqdm.auto import tqdm

        self.env, self.config, self.name = env, config, name
        self.q0, self.t0 = env.blackbox.n_queries, time.perf_counter()
        self.history: list[dict] = []
        self.bar = tqdm(total=config.total_queries, desc=f"explainer {name.upper()}", unit="call",
                        disable=not progress)  # fmt: skip

    @property
    def spent(self) -> int:
        """Queries spent since training started."""
        return self.env.blackbox.n_queries - self.q0

    def advance(self) -> None:
        """Move the bar to the queries spent (capped at the budget)."""
        self.bar.update(max(0, min(self.spent, self.config.total_queries) - self.bar.n))

    def wave(self, wave: int, ep: Episodes, ret: float, **extra: float) -> bool:
        """Record one finished wave (`ret`: its mean return; `extra`: losses, buffer size); True when the query
        budget is spent."""
        self.history.append({"wave": wave, "queries": self.spent, "return": ret, "flip_rate": float(ep.flipped.mean()),
                             "total_mv": float(np.abs(ep.edits).sum(axis=1).mean()), **extra})  # fmt: skip
        self.advance()
        self.bar.set_postfix(flip=f"{self.history[-1]['flip_rate']:.2f}", ret=f"{ret:.2f}")
        return self.spent >= self.config.total_queries

    def summary(self, train_idx: np.ndarray, **extra: object) -> dict:
        """Close the bar; the summary of the training (`extra` before the history)."""
        self.bar.close()
        return {
            "algorithm": self.name,
            "seconds": time.perf_counter() - self.t0,
            "queries": self.spent,
            "waves": len(self.history),
            "train_ecgs": int(len(train_idx)),
            **extra,
            "history": self.history,
        }


def fit_standardisation(modules: list[ActionScorer | nn.Module], states: np.ndarray) -> None:
    """Set every module's feature_mean / feature_std buffers: the measurements from `states` (N, F) (the start
    states: no edit yet), the edit-budget features from fixed physiological scales (`state.fixed_scales`)."""
    mean, std = states.mean(axis=0), np.maximum(states.std(axis=0), 0.02)
    fixed = fixed_scales()
    known = np.isfinite(fixed)
    mean[known], std[known] = 0.0, fixed[known]
    mean, std = torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))
    for m in modules:
        m.feature_mean.copy_(mean)
        m.feature_std.copy_(std)


def train_agent(env: EditEnv, config: AgentConfig | None = None, train_idx: np.ndarray | None = None,
                progress: bool = True) -> CounterfactualAgent:  # fmt: skip
    """Train an agent on the ECGs of `env`'s pool that the model calls positive (or on `train_idx`).

    Args:
        env: the environment (its pool: ECGs of the training split).
        config: the algorithm and its settings.
        train_idx: pool indices to sample episodes from.
        progress: show a tqdm bar over the query budget.

    Raises:
        ValueError: no positive ECG to train on.
    """
    config = config or AgentConfig()
    if train_idx is None:
        train_idx = np.flatnonzero(env.pool.prob0 >= env.blackbox.threshold)
    if len(train_idx) == 0:
        raise ValueError("the model calls none of the training ECGs positive: nothing to explain")
    if config.algorithm == "ppo":
        from .ppo import train_ppo

        return train_ppo(env, config, np.asarray(train_idx), progress)
    from .sac import train_sac

    return train_sac(env, config, np.asarray(train_idx), progress)
