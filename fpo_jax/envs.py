"""Environment registry (Brax, MuJoCo Playground, built-in toy envs) and training/eval wrappers.

`make_env(name)` returns a raw, unbatched env; `wrap_for_training` / `wrap_for_eval` add batching,
the episode limit and (training only) auto-reset, using the libraries' own wrappers:
`brax.envs.wrappers.training.wrap` for Brax and built-in envs,
`mujoco_playground.wrapper.wrap_for_brax_training` for Playground envs. On top of them sits one
thin wrapper of ours that

- accepts typed keys (`jax.random.key`) as well as raw ones and hands the libraries raw uint32 keys
  of shape (num_envs, 2): with typed keys Brax's episode wrapper builds unbatched step counters;
- returns strongly typed states from reset and step (`strip_weak_types`): a weak-typed field (Brax
  envs compute `done` from Python scalars) changes the aval between reset and step, so a rollout
  `lax.scan` would compile twice or reject the carry.

Initial-state diversity: both libraries' auto-reset wrappers restore a finished env to a *cached*
first state (Brax: `info['first_pipeline_state']`, `info['first_obs']`; Playground:
`info['AutoResetWrapper_first_data']`, `..._first_obs`, `..._rng`), taken at the one reset at the
start of training. Left alone, every episode of the run starts from the same `num_envs` states.
Brax's PPO works around this by hard-resetting all envs before each evaluation, which cuts every
running episode short; Playground's `full_reset=True` pays for a reset on every step.
`refresh_initial_states` instead replaces only the caches with a fresh batched reset: running
episodes continue untouched, and the next episodes start from new random states. The trainer calls
it once per iteration inside the compiled step (one batched reset per iteration).

The trainer needs flat observations: `env_sizes` and `flat_obs` read a dict observation (some
Playground envs) through its "state" entry and refuse dicts without one.

MuJoCo Playground is imported on first use (a Playground name that is not a Brax or built-in
one, `list_envs`): importing it costs seconds (its package also imports PyTorch when that is
installed), which a run on a Brax or built-in env does not need to pay.
"""

from __future__ import annotations

import difflib
import importlib
import subprocess
import sys
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
from brax import envs as brax_envs
from brax.envs.base import Env as BraxEnv
from brax.envs.base import State
from brax.envs.base import Wrapper as BraxWrapper
from brax.envs.wrappers import training as brax_training

from fpo_jax.errors import ConfigError
from fpo_jax.toy_envs import DEFAULT_EPISODE_LENGTH, TOY_ENVS

__all__ = [
    "BRAX_BACKENDS",
    "canonical_name",
    "is_dm_control_name",
    "DEFAULT_EPISODE_LENGTH",
    "PLAYGROUND_IMPLS",
    "AnyEnv",
    "env_sizes",
    "flat_obs",
    "is_playground_env",
    "list_envs",
    "make_env",
    "refresh_initial_states",
    "registered_names",
    "strip_weak_types",
    "wrap_for_eval",
    "wrap_for_training",
]

if TYPE_CHECKING:
    from mujoco_playground import MjxEnv
AnyEnv: TypeAlias = "BraxEnv | MjxEnv"
BRAX_BACKENDS = ("generalized", "positional", "spring", "mjx")
PLAYGROUND_IMPLS = ("jax", "warp")

# Info keys of the auto-reset caches that refresh_initial_states replaces.
_BRAX_CACHE = ("first_pipeline_state", "first_obs")
_PLAYGROUND_CACHE = (
    "AutoResetWrapper_first_data",
    "AutoResetWrapper_first_obs",
    "AutoResetWrapper_rng",
)


# ----------------------------------------------------------------------------------------------
# Registry


def _playground() -> ModuleType:
    """The ``mujoco_playground`` package, imported on first use."""
    return importlib.import_module("mujoco_playground")


def _without_playground() -> dict[str, list[str]]:
    # Brax has no public listing; its registry dict also holds register_environment'd envs.
    return {"brax": sorted(brax_envs._envs), "builtin": sorted(TOY_ENVS)}


def list_envs() -> dict[str, list[str]]:
    """Valid `make_env` names grouped by source: "brax", "playground", "builtin"."""
    listing = _without_playground()
    return {
        "brax": listing["brax"],
        "playground": list(_playground().registry.ALL_ENVS),
        "builtin": listing["builtin"],
    }


def _match(name: str, listing: dict[str, list[str]]) -> tuple[str, str] | None:
    """(source, canonical name) of ``name`` in ``listing``, exact or by case; None if absent."""
    source_of = {n: src for src, names in listing.items() for n in names}
    if name in source_of:
        return source_of[name], name
    by_lower = {n.lower(): n for n in source_of}
    if name.lower() in by_lower:
        canonical = by_lower[name.lower()]
        return source_of[canonical], canonical
    return None


def _resolve(name: str) -> tuple[str, str]:
    """Returns (source, canonical name); a name differing only by case is accepted. Brax and
    built-in names resolve without importing Playground."""
    found = _match(name, _without_playground()) or _match(name, list_envs())
    if found is not None:
        return found
    source_of = {n: src for src, names in list_envs().items() for n in names}
    by_lower = {n.lower(): n for n in source_of}
    close = [
        by_lower[n] for n in difflib.get_close_matches(name.lower(), by_lower, n=5, cutoff=0.6)
    ]
    hint = f"closest valid names: {', '.join(close)}" if close else "no close match"
    raise ConfigError(f"Unknown environment {name!r} ({hint}; see fpo_jax.envs.list_envs()).")


def canonical_name(name: str) -> str:
    """The registered spelling of an env name (case-insensitive match); ConfigError if unknown
    (a ValueError, naming the closest valid names)."""
    return _resolve(name)[1]


def is_dm_control_name(name: str) -> bool:
    """Whether `name` is one of MuJoCo Playground's DeepMind Control suite tasks."""
    if _match(name, _without_playground()) is not None:
        return False  # a Brax or built-in name: no need to import Playground to know
    return name in _playground().dm_control_suite.ALL_ENVS


def registered_names(env: Any) -> list[str]:
    """The registered names (sorted) whose constructor builds an env like ``env``: same class,
    and for the built-in bandits the same modes and width; for a Playground env, its class in
    the DM Control suite (several names can share one class: CartpoleBalance and
    CartpoleSwingup). Empty for an env of a class no registry knows. Imports nothing new."""
    from fpo_jax import toy_envs

    cls = type(env)
    if isinstance(env, toy_envs.Bandit):
        return sorted(
            n for n, modes in toy_envs.BANDIT_MODES.items()
            if n in TOY_ENVS and np.array_equal(env.modes, modes)
            and env.width == toy_envs.BANDIT_WIDTH
        )  # fmt: skip
    if cls in (toy_envs.GridWorld, toy_envs.AliasedReach):
        return sorted(n for n, make in TOY_ENVS.items() if make is cls)
    names = [n for n, make in brax_envs._envs.items() if make is cls]
    if (
        not names
        and cls.__module__.startswith("mujoco_playground.")
        and "mujoco_playground" in sys.modules
    ):
        suite = _playground().dm_control_suite
        names = [n for n, make in suite._envs.items() if getattr(make, "func", make) is cls]
    return sorted(names)


def make_env(name: str, *, backend: str | None = None, impl: str = "jax", **kwargs: Any) -> AnyEnv:
    """Builds the raw (unbatched) env `name`.

    Args:
      name: a Brax env ("ant", "inverted_pendulum", ...), a MuJoCo Playground env
        ("CartpoleBalance", ...) or a built-in toy env ("gridworld", "bandit", "bandit2d",
        "aliased_reach").
        Case-sensitive, but a name that only differs by case is accepted.
      backend: Brax physics pipeline (one of `BRAX_BACKENDS`); None keeps the env's own default.
        Only valid for Brax envs.
      impl: MuJoCo implementation of Playground envs (one of `PLAYGROUND_IMPLS`). Defaults to
        "jax" (MJX) because Playground's own default, "warp", is far slower on CPU. Ignored for
        other envs.
      **kwargs: Brax: env constructor arguments; Playground: config overrides (top-level keys);
        built-in: constructor arguments (e.g. `start=(12, 12)` for gridworld).
    """
    source, name = _resolve(name)
    if source == "brax":
        if backend is not None:
            if backend not in BRAX_BACKENDS:
                raise ConfigError(
                    f"Unknown Brax backend {backend!r} for {name!r}; choose one of {', '.join(BRAX_BACKENDS)}."
                )
            kwargs["backend"] = backend
        with warnings.catch_warnings():
            # Brax warns on every env it builds that its pipelines are not actively maintained:
            # nothing a user of this library can act on, so not on their first screen.
            warnings.filterwarnings("ignore", message="Brax System, pip", category=UserWarning)
            return brax_envs.get_environment(name, **kwargs)
    if backend is not None:
        hint = " (pick its MuJoCo implementation with impl=...)" if source == "playground" else ""
        raise ConfigError(
            f"backend={backend!r} applies only to Brax envs and {name!r} is a {source} env{hint}."
        )
    if source == "builtin":
        return TOY_ENVS[name](**kwargs)
    return _load_playground(name, impl, kwargs)


def _load_playground(name: str, impl: str, overrides: dict[str, Any]) -> MjxEnv:
    if impl not in PLAYGROUND_IMPLS:
        raise ConfigError(
            f"Unknown Playground impl {impl!r} for {name!r}; choose one of {', '.join(PLAYGROUND_IMPLS)}."
        )
    overrides = dict(overrides)
    pg_registry = _playground().registry
    if "impl" in pg_registry.get_default_config(name):  # not every env's config has the key
        overrides.setdefault("impl", impl)
    try:
        return pg_registry.load(name, config_overrides=overrides or None)
    except (FileNotFoundError, subprocess.CalledProcessError, ValueError) as e:
        # Robot envs read MuJoCo Menagerie assets, which Playground git-clones on first use:
        # offline that fails (CalledProcessError), and a partial copy fails in MuJoCo's XML
        # loader (ValueError "Error opening file ...").
        needs_menagerie = not is_dm_control_name(name)
        pg_mjx_env = importlib.import_module("mujoco_playground._src.mjx_env")
        if not needs_menagerie or (
            isinstance(e, ValueError) and "Error opening file" not in str(e)
        ):
            raise
        raise ConfigError(
            f"Playground env {name!r} needs the MuJoCo Menagerie robot assets, which are missing "
            f"or incomplete at {pg_mjx_env.MENAGERIE_PATH}: load it once with internet access "
            "(Playground then clones them itself), or git clone "
            "https://github.com/google-deepmind/mujoco_menagerie into that folder and check out "
            f"commit {pg_mjx_env.MENAGERIE_COMMIT_SHA}."
        ) from e


# ----------------------------------------------------------------------------------------------
# Introspection


def is_playground_env(env: Any) -> bool:
    """Whether `env` (raw or wrapped) is a MuJoCo Playground env."""
    if "mujoco_playground" not in sys.modules:
        return False  # nothing has imported Playground, so no object is one of its envs
    mjx_env = _playground().MjxEnv
    return isinstance(env, mjx_env) or isinstance(getattr(env, "unwrapped", None), mjx_env)


def flat_obs(obs: Any) -> Any:
    """The flat observation the trainer uses: `obs` itself, or `obs["state"]` for a dict.

    obs: (..., obs_size) array, or a mapping with a "state" entry of that shape. Also works on
    `jax.ShapeDtypeStruct`s.
    """
    if isinstance(obs, Mapping):
        if "state" not in obs:
            raise ConfigError(
                f"The observation is a dict with keys {sorted(obs)} and no 'state' entry, but the "
                "trainer needs a flat observation array."
            )
        return obs["state"]
    return obs


def env_sizes(env: AnyEnv) -> tuple[int, int]:
    """(obs_size, action_size) of a raw or wrapped env, read from an abstract (traced) reset.

    A dict observation is sized by its "state" entry (see `flat_obs`).
    """
    obs = flat_obs(jax.eval_shape(env.unwrapped.reset, jax.random.PRNGKey(0)).obs)
    if len(obs.shape) != 1:
        raise ConfigError(f"The trainer needs flat (1-D) observations, got shape {obs.shape}.")
    return int(obs.shape[0]), int(env.action_size)


# ----------------------------------------------------------------------------------------------
# Wrapping


def strip_weak_types(tree: Any) -> Any:
    """`tree` with every weakly typed array made strongly typed, keeping its dtype.

    Python scalar leaves become strongly typed arrays too (they would be weak in a scan carry).
    Works on concrete arrays and tracers; other leaves are returned unchanged.
    """

    def strong(x: Any) -> Any:
        if isinstance(x, bool | int | float | complex):
            x = jnp.asarray(x)
        if isinstance(x, jax.Array) and jax.typeof(x).weak_type:
            # convert_element_type always returns a strongly typed result.
            return jax.lax.convert_element_type(x, x.dtype)
        return x

    return jax.tree.map(strong, tree)


def _raw_keys(keys: jax.Array) -> jax.Array:
    """keys: (num_envs,) typed or (num_envs, 2) raw -> (num_envs, 2) raw uint32."""
    if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        keys = jax.random.key_data(keys)
    if keys.ndim != 2:
        raise ValueError(
            "reset expects one key per env, shape (num_envs, 2) as from "
            f"jax.random.split(jax.random.PRNGKey(seed), num_envs), got shape {keys.shape}."
        )
    return keys


class StrongTypedWrapper(BraxWrapper):
    """Outermost wrapper: raw keys in, strongly typed states out of reset and step.

    reset: keys (num_envs, 2) -> State with leading dim num_envs.
    step: (State, action (num_envs, action_size)) -> State.
    """

    def reset(self, rng: jax.Array) -> State:
        return strip_weak_types(self.env.reset(_raw_keys(rng)))

    def step(self, state: State, action: jax.Array) -> State:
        return strip_weak_types(self.env.step(state, action))


def _check_lengths(episode_length: int, action_repeat: int) -> None:
    if episode_length < 1 or action_repeat < 1:
        raise ValueError(
            f"episode_length and action_repeat must be >= 1, got {episode_length} and {action_repeat}."
        )


def wrap_for_training(
    env: AnyEnv, *, episode_length: int, action_repeat: int = 1, full_reset: bool = False
) -> StrongTypedWrapper:
    """Batched, episode-limited, auto-resetting env for rollouts.

    Uses Brax's `training.wrap` (Brax and built-in envs) or Playground's `wrap_for_brax_training`.
    `full_reset=True` (Playground only) resets finished envs with a fresh `env.reset` on every
    step instead of the cached first state; see `refresh_initial_states` for the cheaper default.
    reset: keys (num_envs, 2) -> batched State; step: (State, action (num_envs, action_size)).
    `state.info["truncation"]` marks episodes cut by the time limit; `state.info["steps"]`
    counts steps and wraps to 0 after a reset.
    """
    _check_lengths(episode_length, action_repeat)
    if is_playground_env(env):
        wrapped = _playground().wrapper.wrap_for_brax_training(
            env, episode_length=episode_length, action_repeat=action_repeat, full_reset=full_reset
        )
    else:
        if full_reset:
            raise ValueError(
                "full_reset=True is only available for Playground envs (Brax's auto-reset always "
                "restores the cached first state); use refresh_initial_states instead."
            )
        wrapped = brax_training.wrap(
            env, episode_length=episode_length, action_repeat=action_repeat
        )
    return StrongTypedWrapper(wrapped)


def wrap_for_eval(
    env: AnyEnv, *, episode_length: int, action_repeat: int = 1
) -> StrongTypedWrapper:
    """Batched, episode-limited env without auto-reset, for evaluation episodes run once.

    After an episode ends the env keeps stepping (and `done` may even drop back to 0 for envs
    that recompute termination from the physics), so the evaluator masks rewards after the first
    done. Past `episode_length`, done stays 1 and `info["steps"]` keeps counting.
    """
    _check_lengths(episode_length, action_repeat)
    wrapped = brax_training.VmapWrapper(env)
    wrapped = brax_training.EpisodeWrapper(wrapped, episode_length, action_repeat)
    return StrongTypedWrapper(wrapped)


def refresh_initial_states(wrapped_env: AnyEnv, env_state: Any, keys: jax.Array) -> Any:
    """Replaces the auto-reset caches of `env_state` with a fresh batched reset's.

    Running episodes are untouched (obs, physics state, step counters, rewards, done); envs that
    finish from now on restart from the new random initial states. Jittable.

    wrapped_env: the env from `wrap_for_training`; env_state: its batched state;
    keys: (num_envs, 2) raw keys for the fresh reset. Returns a state of identical structure.
    """
    info = env_state.info
    cache = next((c for c in (_BRAX_CACHE, _PLAYGROUND_CACHE) if c[0] in info), None)
    if cache is None:
        raise ValueError(
            "refresh_initial_states needs a state of an auto-resetting env from wrap_for_training, "
            "and this state holds no cached first state."
        )
    fresh = wrapped_env.reset(keys)
    # A new dict: the wrappers mutate info dicts in place, the caller's state must not change.
    return env_state.replace(info={**info, **{k: fresh.info[k] for k in cache}})
