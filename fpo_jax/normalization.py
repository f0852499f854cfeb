"""Running observation statistics (parallel Welford), as a pytree that lives in the train state."""

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


def update(stats: RunningStats, batch: Array) -> RunningStats:
    """Merge a batch ``(..., obs_dim)`` into the statistics (Chan et al.'s parallel update).

    ``delta = mean_b - mean``; ``mean' = mean + delta n_b / n'``;
    ``m2' = m2 + m2_b + delta^2 n n_b / n'``.
    """
    batch = batch.reshape(-1, batch.shape[-1]).astype(jnp.float32)
    n_b = jnp.asarray(batch.shape[0], jnp.float32)
    mean_b = jnp.mean(batch, axis=0)
    m2_b = jnp.sum(jnp.square(batch - mean_b), axis=0)
    n = stats.count + n_b
    delta = mean_b - stats.mean
    mean = stats.mean + delta * n_b / n
    m2 = stats.m2 + m2_b + jnp.square(delta) * stats.count * n_b / n
    return RunningStats(count=n, mean=mean, m2=m2)


def normalize(stats: RunningStats, obs: Array, enabled: bool = True, clip: float = 10.0) -> Array:
    """``clip((obs - mean) / std, -clip, clip)``; identity when ``enabled`` is False or no data."""
    if not enabled:
        return obs
    z = (obs - stats.mean) / stats.std
    z = jnp.where(stats.count > 0, z, obs)
    return jnp.clip(z, -clip, clip)
