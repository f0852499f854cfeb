"""The command line: ``python -m fpo_jax.train --env ant`` (also installed as ``fpo-train``).

:func:`parse_config` turns flags into a :class:`~fpo_jax.config.TrainConfig` (the preset of
``--env`` / ``--algo`` / ``--variant``, or of the resumed run, then every flag over it) with
tyro; :func:`main` trains it with :func:`fpo_jax.train.train` and maps user errors to exit codes
(2: a config, run-directory or checkpoint problem, said in one sentence; 3: training diverged;
130: interrupted). Only this module imports tyro.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any

import jax
import tyro

from fpo_jax import compile_cache
from fpo_jax.agents import ALGORITHMS
from fpo_jax.config import (
    ALGORITHM_SETTINGS,
    TrainConfig,
    algorithm_setting_names,
    replace,
    typed_sweep,
)
from fpo_jax.errors import CheckpointError, ConfigError, TrainingDiverged
from fpo_jax.presets import (
    CPU_MACHINE_NOTE,
    explain,
    format_explanation,
    preset,
    preset_variants,
    with_changes,
)
from fpo_jax.runs import read_run_config
from fpo_jax.train import _log, train


@dataclass(frozen=True)
class _CliConfig(TrainConfig):
    """TrainConfig as tyro shows it: the bookkeeping field ``preset_source`` and the
    algorithm's own settings (``algo_settings``: flags of their own names, see
    :func:`_cli_class`) have no flag."""

    preset_source: tyro.conf.Suppress[str] = field(default="TrainConfig defaults", compare=False)
    # The chosen algorithm's own settings are flags of their own names (_cli_class).
    algo_settings: tyro.conf.Suppress[tuple[tuple[str, Any], ...]] = ()
    # --sweep repeats and is parsed before tyro (parse_config).
    sweep: tyro.conf.Suppress[tuple[tuple[str, tuple[float, ...]], ...]] = ()


def _as_fields(config: TrainConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)}


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """CLI flags -> config: the preset of ``--env``/``--algo``/``--variant`` (or of the resumed
    run), then flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--env", default=TrainConfig.env)
    pre.add_argument("--algo", default=TrainConfig.algo)
    pre.add_argument("--resume", default=None)
    pre.add_argument("--sweep", action="append", default=None)
    pre.add_argument("--variant", default=None)
    pre.add_argument("--show-config", action="store_true")
    known, _ = pre.parse_known_args(argv)
    # --sweep repeats (one per field): collected here, then removed for tyro. --variant picks
    # the preset here, and tyro records it in the config.
    argv = [a for a in _without_option(argv, "--sweep") if a != "--show-config"]
    # The chosen algorithm's own settings (its registered settings class) are flags too.
    algo = read_run_config(known.resume).algo if known.resume else known.algo
    cli_class = _cli_class(algo)
    machine_layer = False
    if known.resume:
        default = read_run_config(known.resume)
    else:
        variant = known.variant or "default"
        if known.variant is None and _wants_cpu_variant(known.env, argv):
            variant, machine_layer = "cpu", True
            argv = [*argv, "--variant", "cpu"]
        default = preset(known.env, known.algo, variant=variant)
        if machine_layer:
            default = dataclasses.replace(
                default, preset_source=f"{default.preset_source}{CPU_MACHINE_NOTE}"
            )
    algos = "; ".join(f"{name}: {a.description}" for name, a in ALGORITHMS.items())
    own = list(algorithm_setting_names(default.algo))
    config = tyro.cli(
        cli_class,
        default=cli_class(**_as_fields(default), **{n: getattr(default, n) for n in own}),
        args=argv,
        description="Train a flow policy with FPO (or the PPO / DPPO baselines). The defaults "
        "shown are the preset for --env/--algo; every flag overrides it. Algorithms: "
        + algos
        + ". Sweeps: --sweep clip_epsilon=0.05,0.1 --sweep learning_rate=3e-4,1e-3 trains the "
        "grid (x --num-seeds) as one program. Preset variants: --variant paper (gridworld: the "
        "FPO authors' GridWorld settings), --variant fast (DM Control tasks: a layout and FPO "
        "settings searched for a CPU budget), --variant brax (Brax PPO's trainer and, for PPO on "
        "DM Control, Playground's Brax PPO settings), --variant cpu (Brax bodies: the published "
        "layout at 1024 envs and 3M steps; without an accelerator, and with no variant or "
        "layout flag given, Brax bodies start from it: --variant default keeps the published "
        "layout), --variant fpo++ (every env: the FPO++ recipe with the family's learning rate; --variant "
        "fpo++authors: with the FPO++ authors' own numbers; --variant cpu-fpo++ (Brax bodies): the "
        "recipe at the cpu variant's layout and scale, with the family's networks, 10 flow steps "
        "and clip 0.2). --show-config prints every "
        "setting with the preset layer that set it, and exits.",
    )
    given = _flag_names(argv)
    changes = {
        name: value
        for name, value in {**_as_fields(config), **{n: getattr(config, n) for n in own}}.items()
        if name in given or value != getattr(default, name)
    }
    # Another algorithm's settings, when named: refused by with_changes, by name.
    changes.update({
        f.name: getattr(config, f.name) for f in dataclasses.fields(cli_class)
        if f.name in given and f.name not in changes and not hasattr(default, f.name)
    })  # fmt: skip
    # As train(**overrides) applies them: --dppo-sigma also moves the evaluation sigma unless
    # --eval-sigma is given.
    config = with_changes(default, changes)
    if known.sweep is not None:  # parsed here, once, into typed values
        config = replace(config, sweep=typed_sweep(config, known.sweep))
    return config


# Flags that set a run's layout or budget: naming one keeps the published layout on a CPU.
LAYOUT_FLAGS = frozenset({
    "num_envs", "batch_size", "num_minibatches", "unroll_length", "num_epochs", "num_timesteps",
    "num_devices", "distributed",
})  # fmt: skip


def _wants_cpu_variant(env: str, argv: list[str]) -> bool:
    """Whether a run named no variant and no layout flag, on a machine without an
    accelerator, of an env whose preset has a CPU-sized variant (the Brax bodies)."""
    if _flag_names(argv) & LAYOUT_FLAGS:
        return False
    try:
        has_cpu = "cpu" in preset_variants(env)
    except ConfigError:
        return False  # a misspelt env: the preset says so
    return has_cpu and jax.default_backend() == "cpu"


def _cli_class(algo: str) -> type:
    """The flags of a run of ``algo``: TrainConfig's fields and the algorithms' own settings,
    flat (``--num-pairs 16``), each with its type, choices and docstring. Another algorithm's
    settings parse too, so that naming one is refused in a sentence that names its owner
    (:func:`fpo_jax.presets.with_changes`) rather than as an unknown flag; ``algo``'s own class
    comes first, so its types win where two algorithms use one name."""
    classes = [
        ALGORITHM_SETTINGS[a] for a in (algo, *ALGORITHM_SETTINGS) if a in ALGORITHM_SETTINGS
    ]
    bases = tuple(dict.fromkeys(classes))
    if not bases:
        return _CliConfig
    cls = type(f"_CliConfig_{algo}", (_CliConfig, *bases), {"__doc__": _CliConfig.__doc__})
    return dataclass(frozen=True)(cls)


def _flag_names(argv: list[str]) -> set[str]:
    """The config fields named by ``--flag`` / ``--flag=v`` / ``--no-flag`` in ``argv``."""
    names = set()
    for arg in argv:
        if arg.startswith("--"):
            name = arg[2:].partition("=")[0].replace("-", "_")
            names |= {name, name.removeprefix("no_")}
    return names


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE`` pairs."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    config = None
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config = parse_config(argv)
        if "--show-config" in argv:
            # Every setting with the preset layer that set it; nothing is built.
            print(format_explanation(explain(config)))
            return 0
        if config.compile_cache:
            compile_cache.enable()
        result = train(config.env, config)
    except (ConfigError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"error: training diverged: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        where = f"; continue with --resume {config.run_dir}" if config and config.run_dir else ""
        print(f"interrupted{where}", file=sys.stderr)
        return 130
    _log(f"final eval return: {result.final_eval_return:.2f}")
    if result.config.run_dir:
        _log(f"run directory: {result.config.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
