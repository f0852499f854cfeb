"""experiments/ppo_parity.py's stored programs: a program's seeds can be run a few at a time
(``--first-seed K`` runs seeds K .. K+S-1 into a file of their own, and the report joins every
file of a program into one row, seeds in order), and a saved final policy is restored where
evaluation reads it."""

import json
import sys
from pathlib import Path

import pytest

from fpo_jax.config import sweep_members

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
import ppo_parity  # noqa: E402

STORED = EXPERIMENTS / "results" / "ppo_parity" / "CartpoleBalance__fpo:paper.json"


def split(program: dict, first: int, last: int) -> dict:
    """The part of a stored 5-seed program that a run of seeds first..last would have stored."""
    return dict(
        program,
        first_seed=first,
        returns=[row[first : last + 1] for row in program["returns"]],
        final={k: v[first : last + 1] for k, v in program["final"].items()},
    )


def test_the_report_joins_a_programs_seed_files_in_seed_order():
    whole = json.loads(STORED.read_text())
    assert len(whole["returns"][0]) == 5
    parts = [split(whole, 3, 4), split(whole, 0, 2)]  # as globbed: any order
    joined = ppo_parity.join_seeds(parts)
    assert joined["returns"] == whole["returns"]
    assert joined["final"] == whole["final"]
    assert joined["steps"] == whole["steps"]
    assert joined["seconds"] == pytest.approx(2 * whole["seconds"])
    assert ppo_parity.join_seeds([whole]) is whole


def test_seed_files_evaluated_at_other_steps_are_refused():
    whole = json.loads(STORED.read_text())
    later = split(whole, 3, 4)
    later["steps"] = [s + 1 for s in later["steps"]]
    with pytest.raises(SystemExit, match="different env steps"):
        ppo_parity.join_seeds([split(whole, 0, 2), later])


def test_a_later_seed_file_has_its_own_name_and_trains_those_seeds():
    assert ppo_parity.program_path("CartpoleBalance", "fpo:brax order").name == (
        "CartpoleBalance__fpo:brax_order.json"
    )
    path = ppo_parity.program_path("CartpoleBalance", "fpo:brax order", first_seed=1, seeds=2)
    assert path.name == "CartpoleBalance__fpo:brax_order__seeds_1_2.json"
    config = ppo_parity.program_config("CartpoleBalance", "fpo:brax order", 9, 2, first_seed=1)
    assert [m["seed"] for m in sweep_members(config)] == [1, 2]


def test_a_negative_first_seed_is_refused(capsys):
    with pytest.raises(SystemExit):
        ppo_parity.main(["--first-seed", "-1", "--programs", "ours:brax"])
    assert "--first-seed must be 0 or more" in capsys.readouterr().err


def test_a_restored_ema_policy_is_the_one_evaluation_reads():
    """The saved policy of an EMA run is the EMA actor; restored for scoring, it must be what
    evaluation plays (the EMA parameters), not a fresh actor's copy."""
    import jax
    import numpy as np

    from fpo_jax.evaluation import evaluated_params

    program = "fpo:fpo++ brax order"
    config = ppo_parity.program_config("CartpoleBalance", program, 9, 1)
    assert config.ema_decay is not None
    path = ppo_parity.program_path("CartpoleBalance", program)
    state = ppo_parity.restore_final_state("CartpoleBalance", config, path)
    from flax import serialization

    template = {"policy": state.params["policy"], "obs_stats": state.obs_stats}
    saved = serialization.from_bytes(template, path.with_suffix(".policy.msgpack").read_bytes())
    played = evaluated_params(state.params, state.ema_params)["policy"]
    for got, want in zip(jax.tree.leaves(played), jax.tree.leaves(saved["policy"]), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
