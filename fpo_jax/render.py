"""Render a policy's rollout to video: ``python -m fpo_jax.render RUN_DIR --out video.mp4``.

The command loads ``RUN_DIR/config.json`` and the latest checkpoint in ``RUN_DIR/checkpoints``,
rolls out one episode of the evaluation policy on a single (unbatched) environment, renders every
physics step with MuJoCo's renderer and writes an MP4::

    python -m fpo_jax.render runs/cartpole --out cartpole.mp4 --episode-length 300 --seed 1

From Python (e.g. a notebook, on the :class:`~fpo_jax.train.TrainResult` of ``train``)::

    from fpo_jax import render
    frames = render.render_policy(result.trainer.env, result.policy, jax.random.PRNGKey(0), 200)
    render.show_video(frames, fps=render.frame_rate(result.trainer.env))

What can be rendered
--------------------
* Brax envs (any backend): through ``env.render(pipeline_states, ...)``, i.e. the MuJoCo model
  ``env.sys.mj_model``.
* MuJoCo Playground envs: through ``env.render(states, ...)`` (``env.mj_model``).
* The built-in ``gridworld``: drawn directly with numpy (a top view of the grid, the goal rows,
  the path so far and the agent); no OpenGL needed.
* The built-in bandits have nothing to show (no state, one step): :class:`RenderError`.

Frames: one for the initial state and one per environment step (with ``action_repeat`` k the
policy acts every k steps and every physics step is a frame), so an episode of N steps gives
N + 1 frames; by default the video stops at the first ``done``. The video plays in real time:
``fps = 1 / env.dt``.

Headless OpenGL (the ``MUJOCO_GL`` environment variable)
-------------------------------------------------------
MuJoCo picks its OpenGL backend when ``mujoco`` is first imported, from ``MUJOCO_GL``:

* ``MUJOCO_GL=egl``: headless EGL. On a machine with an NVIDIA GPU (Colab's GPU runtime) it renders
  on the GPU; on a CPU-only Linux machine Mesa's EGL renders in software (llvmpipe), which needs
  ``apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri`` (present on most images).
* ``MUJOCO_GL=osmesa``: software rendering on the CPU through OSMesa;
  needs ``apt-get install -y libosmesa6``.
* ``MUJOCO_GL=glfw`` (MuJoCo's own default): needs a display; not for servers or Colab.

If ``MUJOCO_GL`` is unset when this module is imported *before* ``mujoco``, it is set to ``egl``
when ``libEGL`` is found, else to ``osmesa`` when ``libOSMesa`` is found (Linux only). Importing
``fpo_jax.train`` or ``fpo_jax.envs`` first imports ``mujoco`` (through Brax), so in a notebook
either import this module first or set ``os.environ["MUJOCO_GL"] = "egl"`` in the first cell.
:func:`gl_available` says whether rendering works in the current process.

Writing MP4s needs the ``ffmpeg`` binary (mediapy calls it): ``apt-get install -y ffmpeg``,
``conda install ffmpeg``, or ``pip install imageio-ffmpeg`` (its bundled binary is used when no
``ffmpeg`` is on the ``PATH``). Colab has ``ffmpeg`` already.
"""

from __future__ import annotations

import ctypes.util
import os
import sys


def _default_gl_backend() -> str | None:
    """``egl`` if libEGL is present, else ``osmesa`` if libOSMesa is; None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    if ctypes.util.find_library("EGL"):
        return "egl"
    if ctypes.util.find_library("OSMesa"):
        return "osmesa"
    return None


# Must run before the first `import mujoco` (Brax and Playground import it): MuJoCo reads
# MUJOCO_GL once, at import time.
if "MUJOCO_GL" not in os.environ and "mujoco" not in sys.modules:
    _backend = _default_gl_backend()
    if _backend is not None:
        os.environ["MUJOCO_GL"] = _backend

import argparse  # noqa: E402
import shutil  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from fpo_jax import envs  # noqa: E402
from fpo_jax.artifacts import Policy, load_run  # noqa: E402
from fpo_jax.errors import CheckpointError, ConfigError, RenderError  # noqa: E402
from fpo_jax.toy_envs import GridWorld  # noqa: E402

__all__ = [
    "RenderError",
    "frame_rate",
    "gl_available",
    "render_policy",
    "render_states",
    "rollout",
    "show_video",
    "write_video",
]

Frames = list[np.ndarray]

# Frame rate of the gridworld drawings (it has no physical time step).
GRIDWORLD_FPS = 8.0


# ----------------------------------------------------------------------------------------------
# OpenGL


def gl_available() -> tuple[bool, str]:
    """Whether MuJoCo can render offscreen in this process: ``(ok, message)``.

    Builds a tiny model and renders one 16 x 16 frame. The message names the backend
    (``MUJOCO_GL``) or says why rendering failed and how to fix it.
    """
    import mujoco

    backend = os.environ.get("MUJOCO_GL", "") or "glfw (MuJoCo's default)"
    try:
        model = mujoco.MjModel.from_xml_string(
            "<mujoco><worldbody><geom type='sphere' size='.1'/></worldbody></mujoco>"
        )
        data = mujoco.MjData(model)
        with mujoco.Renderer(model, 16, 16) as renderer:
            renderer.update_scene(data)
            renderer.render()
    except Exception as e:  # noqa: BLE001 - any failure means "no rendering here"
        return False, (
            f"MuJoCo cannot render with MUJOCO_GL={backend}: {type(e).__name__}: {e}. "
            "Headless machines need MUJOCO_GL=egl (GPU, or Mesa's libegl-mesa0 on CPU) or "
            "MUJOCO_GL=osmesa (apt-get install -y libosmesa6), set before mujoco is imported."
        )
    return True, f"MUJOCO_GL={backend}"


# ----------------------------------------------------------------------------------------------
# Rollout


def _renderer_kind(env: Any) -> str:
    """'playground', 'brax', 'gridworld'; RenderError for anything else."""
    raw = getattr(env, "unwrapped", env)
    if envs.is_playground_env(raw):
        return "playground"
    if isinstance(raw, GridWorld):
        return "gridworld"
    if getattr(getattr(raw, "sys", None), "mj_model", None) is not None:
        return "brax"
    raise RenderError(
        f"Cannot render {type(raw).__name__}: rendering needs a MuJoCo-based env (Brax or "
        "MuJoCo Playground) or the built-in gridworld; the bandits have no state to show."
    )


def rollout(
    env: Any,
    policy: Policy,
    key: jax.Array,
    num_steps: int,
    *,
    action_repeat: int = 1,
    stop_at_done: bool = True,
) -> list[Any]:
    """Run ``policy`` on one unbatched env and return its states.

    The policy acts every ``action_repeat`` env steps (the action is held in between). The whole
    episode is one compiled ``lax.scan`` of ``env.step``.

    Args:
      env: a raw, unbatched env (``make_env(...)``, ``TrainResult.trainer.env``).
      policy: ``policy(obs (obs_dim,), key) -> action (A,)`` in [-1, 1], e.g.
        ``TrainResult.policy`` or ``Trainer.policy_fn(params, obs_stats)``.
      key: PRNG key (raw or typed) for the reset and the policy's noise.
      num_steps: env steps to run (at most).
      action_repeat: env steps per policy action.
      stop_at_done: drop the states after the first ``done`` (it is kept).

    Returns:
      ``[initial_state, state_1, ..., state_n]`` (env ``State``s with numpy leaves),
      ``n = num_steps``, or fewer with ``stop_at_done``.
    """
    if num_steps < 1 or action_repeat < 1:
        raise ValueError(
            f"num_steps and action_repeat must be >= 1, got {num_steps}, {action_repeat}."
        )
    num_actions = -(-num_steps // action_repeat)
    k_reset, k_act = jax.random.split(key)
    if jax.dtypes.issubdtype(k_reset.dtype, jax.dtypes.prng_key):
        k_reset = jax.random.key_data(k_reset)  # the envs' reset expects a raw uint32[2] key

    @jax.jit
    def run(k_reset, k_act):
        state = envs.strip_weak_types(env.reset(k_reset))

        def act(state, step_key):
            action = policy(state.obs, step_key)

            def physics_step(state, _):
                state = envs.strip_weak_types(env.step(state, action))
                return state, state

            return jax.lax.scan(physics_step, state, None, length=action_repeat)

        _, states = jax.lax.scan(act, state, jax.random.split(k_act, num_actions))
        # (num_actions, action_repeat, ...) -> (num_actions * action_repeat, ...)
        states = jax.tree.map(lambda x: x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]), states)
        return state, states

    first, stacked = jax.device_get(run(k_reset, k_act))
    length = num_steps
    if stop_at_done:
        done = np.flatnonzero(np.asarray(stacked.done[:num_steps]) > 0)
        if done.size:
            length = int(done[0]) + 1
    return [first] + [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(length)]


def _draw_gridworld(env: GridWorld, states: Sequence[Any], cell: int = 10) -> Frames:
    """Top view of the grid per state: goal rows green, visited cells grey, agent red.

    Each frame is ``(size * cell, size * cell, 3) uint8``; the top goal rows are at the top.
    """
    size = env.size
    base = np.full((size, size, 3), 255, np.uint8)
    base[: env.goal_rows] = base[size - env.goal_rows :] = (170, 220, 170)
    visited = np.zeros((size, size), bool)
    frames = []
    for state in states:
        x, y = (int(v) for v in np.asarray(state.pipeline_state))
        img = base.copy()
        img[visited] = (200, 200, 200)
        img[y, x] = (220, 40, 40)
        visited[y, x] = True
        # Row y = size - 1 ("top") at the top of the picture; thin lines between cells.
        big = np.repeat(np.repeat(img[::-1], cell, axis=0), cell, axis=1)
        big[::cell] = big[:, ::cell] = (235, 235, 235)
        frames.append(big)
    return frames


def render_states(
    env: Any,
    states: Sequence[Any],
    *,
    height: int = 240,
    width: int = 320,
    camera: str | int | None = None,
) -> Frames:
    """Frames ``(height, width, 3) uint8`` of env states from :func:`rollout`.

    Brax: ``env.render`` of the pipeline states; Playground: ``env.render`` of the states;
    gridworld: a numpy drawing (``height``, ``width`` and ``camera`` unused).
    ``camera``: a camera name or id of the MuJoCo model; None is the free camera. (Brax treats
    camera id 0 as the free camera; name the camera instead.)
    """
    raw = getattr(env, "unwrapped", env)
    kind = _renderer_kind(raw)
    if kind == "gridworld":
        return _draw_gridworld(raw, states)
    if kind == "brax":
        frames = raw.render([s.pipeline_state for s in states], height, width, camera=camera)
    else:
        frames = raw.render(list(states), height, width, camera=camera)
    return [np.asarray(f) for f in frames]


def render_policy(
    env: Any,
    policy: Policy,
    key: jax.Array,
    episode_length: int,
    *,
    action_repeat: int = 1,
    stop_at_done: bool = True,
    height: int = 240,
    width: int = 320,
    camera: str | int | None = None,
) -> Frames:
    """Roll out ``policy`` for one episode and render it: :func:`rollout` + :func:`render_states`.

    Example (a :class:`~fpo_jax.train.TrainResult` ``result``)::

        frames = render_policy(result.trainer.env, result.policy, jax.random.PRNGKey(0),
                               result.config.episode_length)

    Returns:
      ``episode_length + 1`` frames (fewer if the episode ends first and ``stop_at_done``),
      each ``(height, width, 3) uint8``.
    """
    _renderer_kind(env)  # fail before compiling anything
    states = rollout(
        env, policy, key, episode_length, action_repeat=action_repeat, stop_at_done=stop_at_done
    )
    return render_states(env, states, height=height, width=width, camera=camera)


def frame_rate(env: Any) -> float:
    """Real-time frames per second of :func:`render_policy`'s frames: ``1 / env.dt``."""
    raw = getattr(env, "unwrapped", env)
    if _renderer_kind(raw) == "gridworld":
        return GRIDWORLD_FPS
    return float(1.0 / float(raw.dt))


# ----------------------------------------------------------------------------------------------
# Video files and notebooks


def _ensure_ffmpeg() -> None:
    import mediapy

    if shutil.which("ffmpeg"):
        return
    try:
        import imageio_ffmpeg
    except ImportError:
        raise RuntimeError(
            "Writing MP4 needs the ffmpeg binary: apt-get install -y ffmpeg (or conda install "
            "ffmpeg, or pip install imageio-ffmpeg)."
        ) from None
    mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write frames ``(H, W, 3) uint8`` to an MP4 (H.264) with mediapy; returns the path.

    H and W should be even (H.264 with yuv420p).
    """
    import mediapy

    _ensure_ffmpeg()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mediapy.write_video(path, np.stack(frames), fps=fps)
    return path


def show_video(
    path_or_frames: str | Path | Sequence[np.ndarray], *, fps: float | None = None, **kwargs: Any
) -> None:
    """Show a video inline in a notebook (``mediapy.show_video``).

    Args:
      path_or_frames: an MP4 file (e.g. written by ``python -m fpo_jax.render``) or a sequence of
        ``(H, W, 3)`` frames (from :func:`render_policy`).
      fps: frames per second; default: the file's own rate, or 30 for frames.
      **kwargs: passed to ``mediapy.show_video`` (``width``, ``title``, ``codec``...).

    Raises:
      RuntimeError: no ``ffmpeg`` binary (see the module docstring).
    """
    import mediapy

    _ensure_ffmpeg()  # mediapy encodes the inline video with ffmpeg too
    if isinstance(path_or_frames, str | Path):
        video = mediapy.read_video(path_or_frames)
        fps = fps or video.metadata.fps
        frames: Any = video
    else:
        frames = np.stack(path_or_frames)
    mediapy.show_video(frames, fps=fps or 30.0, **kwargs)


# ----------------------------------------------------------------------------------------------
# CLI


def _camera(value: str) -> str | int:
    return int(value) if value.lstrip("-").isdigit() else value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fpo_jax.render",
        description="Render one episode of a trained run's policy to an MP4. Headless machines "
        "need MUJOCO_GL=egl or osmesa (set automatically when unset; see the module docstring).",
    )
    p.add_argument("run_dir", type=Path, help="run directory written by fpo_jax.train")
    p.add_argument("--out", type=Path, default=None, help="output MP4 (default: RUN_DIR/video.mp4)")
    p.add_argument(
        "--episode-length", type=int, default=None, help="env steps (default: the run's)"
    )
    p.add_argument("--seed", type=int, default=0, help="PRNG seed of the reset and the policy")
    p.add_argument(
        "--camera", type=_camera, default=None, help="camera name or id (default: free camera)"
    )
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--step", type=int, default=None, help="checkpoint iteration (default: latest)")
    p.add_argument(
        "--member", "--seed-index", dest="member", type=int, default=0,
        help="which member (seed, or sweep setting x seed) of a multi-member run",
    )  # fmt: skip
    p.add_argument(
        "--no-stop-at-done",
        dest="stop_at_done",
        action="store_false",
        help="keep rendering after the episode ends (default: stop at the first done)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run = load_run(args.run_dir, step=args.step, member=args.member)
        kind = _renderer_kind(run.env)
        if kind != "gridworld":
            ok, message = gl_available()
            if not ok:
                raise RenderError(message)
        episode_length = args.episode_length or run.config.episode_length
        frames = render_policy(
            run.env,
            run.policy,
            jax.random.PRNGKey(args.seed),
            episode_length,
            action_repeat=run.config.action_repeat,
            stop_at_done=args.stop_at_done,
            height=args.height,
            width=args.width,
            camera=args.camera,
        )
        out = write_video(args.out or args.run_dir / "video.mp4", frames, fps=frame_rate(run.env))
    except (ConfigError, CheckpointError, RenderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"[fpo_jax] wrote {out}: {len(frames)} frames at {frame_rate(run.env):.1f} fps "
        f"({run.config.algo} on {run.config.env}, checkpoint step {run.step})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
