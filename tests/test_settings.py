"""Settings are owned by what reads them: each algorithm declares the config fields its agent
reads, and a changed value of a field the chosen algorithm never reads is refused."""

import ast
import dataclasses
import inspect
import textwrap

import pytest

from fpo_jax import trainer
from fpo_jax.agents import ALGORITHMS, unread_settings
from fpo_jax.config import TrainConfig

FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def _config_reads(source: str) -> set[str]:
    """Config fields read in ``source``: ``c.x``, ``config.x``, ``self.config.x``."""
    found = set()
    for node in ast.walk(ast.parse(textwrap.dedent(source))):
        if isinstance(node, ast.Attribute) and node.attr in FIELDS:
            owner = ast.unparse(node.value)
            if owner in ("c", "config", "self.config", "cfg"):
                found.add(node.attr)
    return found


def _agent_reads(cls: type) -> set[str]:
    classes = [k for k in cls.__mro__ if k.__module__.startswith("fpo_jax.agents")]
    return set().union(*(_config_reads(inspect.getsource(k)) for k in classes))


@pytest.mark.parametrize("algo", ["fpo", "ppo", "dppo"])
def test_each_algorithm_declares_exactly_the_settings_its_agent_reads(algo):
    entry = ALGORITHMS[algo]
    assert entry.reads == _agent_reads(entry.make)


def test_the_trainer_reads_no_setting_an_algorithm_declares():
    # Otherwise a setting the trainer needs could be refused as "unread" by some algorithm.
    declared = set().union(*(ALGORITHMS[a].reads for a in ("fpo", "ppo", "dppo")))
    trainer_reads = _config_reads(inspect.getsource(trainer))
    assert "learning_rate" in trainer_reads  # the reader sees the trainer's reads
    assert trainer_reads & declared == set()


def test_unread_settings_name_what_other_algorithms_read():
    assert {"entropy_cost", "gaussian_fixed_std"} <= unread_settings("fpo")
    assert {"num_pairs", "ratio", "flow_noise_scale", "eval_noise"} <= unread_settings("ppo")
    assert {"ratio", "trust_region", "num_pairs", "entropy_cost"} <= unread_settings("dppo")
    assert "clip_epsilon" not in unread_settings("dppo")
    assert "dppo_sigma" in unread_settings("fpo") & unread_settings("ppo")
