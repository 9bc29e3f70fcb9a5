"""The baseline: greedy search over the same edit space, one ECG at a time.

At every step it tries EVERY allowed edit from the current state (one batched model call of up to 12 x 4 x 2 x
levels candidates), keeps the one with the best one-step reward of the RL environment (so: a flipping edit with
the smallest cost if there is one, otherwise the most progress per cost) and stops on a flip or after `max_steps`.
Same edits, same bounds, same reward as the agent; the agent replaces this per-ECG search (hundreds of model calls)
by one roll-out (a few calls).

    episodes = greedy_search(env, pool_index)
"""

from __future__ import annotations

import numpy as np

from .environment import EditEnv, Episodes


def greedy_search(env: EditEnv, index: int) -> Episodes:
    """Greedy counterfactual search for pool ECG `index`; returns its (single) episode."""
    ep = env.start(np.array([index]))
    while ep.active[0]:
        actions, _, rewards = env.try_every_edit(ep, 0)  # one batched model call for all candidates
        env.step(ep, np.array([actions[int(np.argmax(rewards))]]))  # answered from the cache
    return ep
