"""Running observation statistics, as a pytree that lives in the train state.

Three modes (``TrainConfig.obs_norm``):

* ``"welford"`` (default, correct): Chan et al.'s parallel update of count, mean and the sum of
  squared deviations ``m2``, so ``std = sqrt(m2 / count)`` is the std of every observation seen.
  Normalised observations are clipped to [-10, 10].
* ``"brax"``: the same statistics, not clipped (Brax's ``running_statistics.normalize``). The
  trainer also applies them in Brax's order (see :mod:`fpo_jax.trainer`).
* ``"reference"``: what the FPO authors' code computes, to reproduce their numbers exactly. Its
  update of the summed variance *replaces* it with the newest batch's term instead of adding to
  it (``m2' = sum_b (x - mean)(x - mean')``), while ``count`` keeps growing; after k updates with
  batches of true std s the std reads about ``s / sqrt(k)`` (3.0 reads 2.12, 1.5, 0.75, 0.38
  after 2, 4, 16, 61 updates). Normalised observations are not clipped in this mode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array


@struct.dataclass
class RunningStats:
    """Count, mean and sum of squared deviations of every observation seen so far.

    ``mean: (obs_dim,)``, ``m2: (obs_dim,)``, ``count: ()`` (float32, so 1e9+ samples fit).
    """

    count: Array
    mean: Array
    m2: Array

    @classmethod
    def zeros(cls, obs_size: int) -> RunningStats:
        return cls(
            count=jnp.zeros((), jnp.float32),
            mean=jnp.zeros((obs_size,), jnp.float32),
            m2=jnp.zeros((obs_size,), jnp.float32),
        )

    @property
    def std(self) -> Array:
        # Floor so constant features (variance 0) map to 0 instead of blowing up.
        var = self.m2 / jnp.maximum(self.count, 1.0)
        return jnp.maximum(jnp.sqrt(var), 1e-6)


def update(stats: RunningStats, batch: Array, mode: str = "welford") -> RunningStats:
    """Merge a batch ``(..., obs_dim)`` into the statistics.

    ``"welford"`` (Chan et al.'s parallel update): ``delta = mean_b - mean``;
    ``mean' = mean + delta n_b / n'``; ``m2' = m2 + m2_b + delta^2 n n_b / n'``.
    ``"reference"`` (the FPO authors' code): same ``mean'``, and
    ``m2' = sum_b (x - mean) (x - mean')``, the previous ``m2`` dropped (see module docstring).
    """
    batch = batch.reshape(-1, batch.shape[-1]).astype(jnp.float32)
    _check_mode(mode)
    if mode == "reference":
        n = stats.count + batch.shape[0]
        mean = stats.mean + jnp.sum(batch - stats.mean, axis=0) / n
        m2 = jnp.sum((batch - stats.mean) * (batch - mean), axis=0)
        return RunningStats(count=n, mean=mean, m2=m2)
    n_b = jnp.asarray(batch.shape[0], jnp.float32)
    mean_b = jnp.mean(batch, axis=0)
    m2_b = jnp.sum(jnp.square(batch - mean_b), axis=0)
    n = stats.count + n_b
    delta = mean_b - stats.mean
    mean = stats.mean + delta * n_b / n
    m2 = stats.m2 + m2_b + jnp.square(delta) * stats.count * n_b / n
    return RunningStats(count=n, mean=mean, m2=m2)


def normalize(
    stats: RunningStats, obs: Array, enabled: bool = True, mode: str = "welford"
) -> Array:
    """``clip((obs - mean) / std, -10, 10)``; modes "reference" (the FPO authors') and "brax"
    do not clip. Identity when ``enabled`` is False or no data has been seen."""
    _check_mode(mode)
    if not enabled:
        return obs
    z = (obs - stats.mean) / stats.std
    z = jnp.where(stats.count > 0, z, obs)
    return jnp.clip(z, -10.0, 10.0) if mode == "welford" else z


MODES = ("welford", "brax", "reference")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"Unknown normalisation mode {mode!r}; use one of {MODES}.")
