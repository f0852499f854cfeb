"""The small interface every algorithm implements, so the trainer never branches on it.

An agent owns the *policy* (the value network is shared machinery and lives in the trainer).
All methods are pure and work on any leading batch dims ``B``:

* ``init(key, obs_size) -> params``
* ``act(params, obs, key) -> (raw_action (*B, A), extras)``: rollout-time sampling. ``raw_action``
  is the pre-squash action (the env receives ``tanh(raw_action)``); ``extras`` is a dict of arrays
  with leading dims ``B`` that the objective needs later (FPO: the (t, eps) pairs and their old
  CFM losses; PPO: the old log-probability; DPPO: the denoising chain and its old log-probs).
* ``objective(params, obs, raw_action, extras, advantages) -> (loss, metrics)``: the policy loss
  (to minimise) on a batch, with scalar diagnostics.
* ``eval_act(params, obs, key) -> raw_action``: the evaluation sampler (flow policies: the
  config's eval integrator and noise start; Gaussian PPO: the mean action).

Agents are immutable dataclasses holding their config (and network); the trainer closes over
them, so nothing in them is traced state.

Two optional members let a sweep reach an agent (PureJaxRL style: a member's hyperparameters
are an argument of the pure functions, here of the agent that builds them):

* ``reads``: the config fields the agent reads (built-in agents: their registry entry's, less
  the default network's when a network is injected); a swept setting that neither the trainer
  nor the agent reads is refused, as every member would train the same;
* ``with_settings(config) -> Agent``: the same agent reading ``config``, a sweep member's config
  with traced values, called inside the compiled step (built-in agents: a copy with that
  config). An agent that reads a swept setting must offer it.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

Array = jax.Array
Params = Any
Extras = dict[str, Array]


class Agent(Protocol):
    name: str
    action_size: int

    def init(self, key: Array, obs_size: int) -> Params: ...

    def act(self, params: Params, obs: Array, key: Array) -> tuple[Array, Extras]: ...

    def objective(
        self, params: Params, obs: Array, raw_action: Array, extras: Extras, advantages: Array
    ) -> tuple[Array, dict[str, Array]]: ...

    def eval_act(self, params: Params, obs: Array, key: Array) -> Array: ...
