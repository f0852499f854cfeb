"""Algorithms behind one interface (see :mod:`fpo_jax.agents.base`)."""

from fpo_jax.agents.base import Agent
from fpo_jax.agents.dppo import DPPOAgent
from fpo_jax.agents.fpo import FPOAgent
from fpo_jax.agents.ppo import GaussianPPOAgent
from fpo_jax.config import TrainConfig

AGENTS = {"fpo": FPOAgent, "ppo": GaussianPPOAgent, "dppo": DPPOAgent}


def make_agent(config: TrainConfig, action_size: int) -> Agent:
    """The agent named by ``config.algo`` for an action space of ``action_size`` dims."""
    if config.algo not in AGENTS:
        raise ValueError(f"algo={config.algo!r} is not one of {tuple(AGENTS)}.")
    return AGENTS[config.algo](config=config, action_size=action_size)


__all__ = ["AGENTS", "Agent", "DPPOAgent", "FPOAgent", "GaussianPPOAgent", "make_agent"]
