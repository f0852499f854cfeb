"""The package's layering: no import circle, config at the bottom, light policy loading."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fpo_jax"
ROOT = PACKAGE.parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_imports(path: Path) -> set[str]:
    """The fpo_jax modules ``path`` imports (``from fpo_jax import x`` counts x if a module).

    One block is skipped: a module-level ``__getattr__`` that keeps a moved name reachable at
    its old address (``fpo_jax.config.preset``) for users; no package module uses it (checked
    below).
    """
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for f in tree.body
        if isinstance(f, ast.FunctionDef) and f.name == "__getattr__"
        for n in ast.walk(f)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("fpo_jax")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fpo_jax"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                is_module = (ROOT / Path(*sub.split(".")).with_suffix(".py")).exists() or (
                    ROOT / Path(*sub.split(".")) / "__init__.py"
                ).exists()
                found.add(sub if is_module else node.module)
    return found - {"fpo_jax"}


def _graph() -> dict[str, set[str]]:
    """Every fpo_jax module -> the fpo_jax modules it imports, at the top or inside functions."""
    return {_module_name(p): _package_imports(p) for p in PACKAGE.rglob("*.py")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [*path, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_import_graph_has_no_circle_even_counting_imports_inside_functions():
    graph = _graph()
    assert "fpo_jax.runs" in graph["fpo_jax.artifacts"]  # the reader sees real edges
    assert _cycle(graph) is None, f"import circle: {' -> '.join(_cycle(graph))}"
    # The check finds a circle when there is one.
    assert _cycle({**graph, "fpo_jax.config": {"fpo_jax.presets"}}) is not None


def test_no_package_module_uses_the_old_addresses_of_moved_names():
    moved = ("PAPER_DM_CONTROL_TASKS", "preset", "preset_family", "preset_variants")
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "fpo_jax.config":
                assert not {a.name for a in node.names} & set(moved), path
            if isinstance(node, ast.Attribute) and node.attr in moved:
                assert ast.unparse(node.value) not in ("config", "fpo_jax.config"), path


def test_config_imports_only_the_errors_module_and_only_cli_imports_tyro():
    assert _graph()["fpo_jax.config"] == {"fpo_jax.errors"}
    assert _graph()["fpo_jax.errors"] == set()
    uses_tyro = sorted(
        _module_name(p) for p in PACKAGE.rglob("*.py") if "import tyro" in p.read_text()
    )
    assert uses_tyro == ["fpo_jax.cli"]


LIGHT_LOAD = """
import sys, jax, jax.numpy as jnp
from fpo_jax import artifacts
from fpo_jax.agents import make_agent
from fpo_jax.config import TrainConfig
from fpo_jax.normalization import RunningStats

for algo in ("fpo", "ppo", "dppo"):
    config = TrainConfig(env="gridworld", algo=algo, policy_hidden=(8,))
    agent = make_agent(config, 2)
    params = agent.init(jax.random.PRNGKey(0), 3)
    stats = RunningStats.zeros(3)
    path = artifacts.save_policy(sys.argv[1] + f"/{algo}.msgpack", config, params, stats, 3, 2)
    policy = artifacts.load_policy(path, noise="zero")
    assert policy(jnp.zeros((4, 3)), jax.random.PRNGKey(1)).shape == (4, 2)
top = {m.split(".")[0] for m in sys.modules}
heavy = sorted(top & {"tyro", "brax", "mujoco", "mujoco_playground"})
heavy += sorted(set(sys.modules) & {"fpo_jax.envs", "fpo_jax.trainer", "fpo_jax.cli"})
print("HEAVY", heavy)
"""


def test_load_policy_imports_neither_tyro_nor_a_simulator(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", LIGHT_LOAD, str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HEAVY []" in out.stdout, out.stdout


BRAX_AND_BUILTIN_RUN = """
import sys
from fpo_jax.train import train
from fpo_jax.presets import preset
from fpo_jax import envs

preset("ant"), preset("gridworld", variant="paper"), envs.canonical_name("Hopper")
train("gridworld", num_timesteps=256, num_envs=8, batch_size=8, num_minibatches=2,
      unroll_length=16, num_evals=1, num_eval_envs=4, progress=False)
print("PLAYGROUND", "mujoco_playground" in sys.modules)
envs.canonical_name("cartpolebalance")  # a Playground name imports it, once asked for
print("PLAYGROUND", "mujoco_playground" in sys.modules)
"""


def test_a_run_on_a_builtin_env_does_not_import_playground():
    # Importing MuJoCo Playground costs seconds (and PyTorch's import, where it is installed).
    out = subprocess.run(
        [sys.executable, "-c", BRAX_AND_BUILTIN_RUN],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["PLAYGROUND", "False", "PLAYGROUND", "True"], out.stdout


def test_config_error_stays_reachable_at_its_old_address():
    import fpo_jax.config
    import fpo_jax.errors

    assert fpo_jax.config.ConfigError is fpo_jax.errors.ConfigError


def test_each_row_of_the_readme_layout_table_imports_only_rows_below_it():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Layout") : readme.index("## Tested versions")]
    rows = []  # top to bottom: the module-name prefixes each row covers
    for line in table.splitlines():
        if line.startswith("| `fpo_jax/"):
            cell = line.split("|")[1]
            paths = [p.strip(" `").removeprefix("fpo_jax/") for p in cell.split(", ")]
            rows.append(["fpo_jax." + p.removesuffix(".py").strip("/") for p in paths])
    graph = _graph()

    def in_row(module: str, row: list[str]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in row)

    covered = {m for m in graph if m != "fpo_jax" and any(in_row(m, r) for r in rows)}
    assert covered == set(graph) - {"fpo_jax", "fpo_jax.render"}  # every module has a row
    row_of = {m: i for m in covered for i, r in enumerate(rows) if in_row(m, r)}
    upward = [(m, d) for m in covered for d in graph[m] if d in row_of and row_of[d] < row_of[m]]
    assert upward == []


LIGHT_EXPORT = """
import sys
from fpo_jax import artifacts
path = artifacts.export_policy(sys.argv[1], sys.argv[1] + "/policy.msgpack", noise="zero")
artifacts.load_policy(path)
top = {m.split(".")[0] for m in sys.modules}
heavy = sorted(top & {"tyro", "brax", "mujoco", "mujoco_playground", "optax"})
heavy += sorted(set(sys.modules) & {"fpo_jax.envs", "fpo_jax.trainer", "fpo_jax.cli"})
print("HEAVY", heavy)
"""


def test_export_policy_builds_no_env_optimizer_or_trainer(tmp_path):
    # The export reads the checkpoint and the run's files only; its policy acts as load_run's.
    import jax
    import numpy as np

    import fpo_jax
    from fpo_jax.train import train

    train("gridworld", num_timesteps=256, num_envs=8, batch_size=8, num_minibatches=2,
          unroll_length=16, num_evals=1, num_eval_envs=4, progress=False,
          run_dir=str(tmp_path))  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", LIGHT_EXPORT, str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HEAVY []" in out.stdout, out.stdout
    settings = (tmp_path / "settings.txt").read_text()  # each setting and its layer
    assert "num_timesteps" in settings and "your setting" in settings
    run = fpo_jax.load_run(tmp_path, noise="zero")
    exported = fpo_jax.load_policy(tmp_path / "policy.msgpack")
    assert exported.config.eval_noise == "zero"
    obs = jax.random.normal(jax.random.PRNGKey(0), (5, run.trainer.obs_size))
    np.testing.assert_array_equal(
        exported(obs, jax.random.PRNGKey(1)), run.policy(obs, jax.random.PRNGKey(1))
    )
