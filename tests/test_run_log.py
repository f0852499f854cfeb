"""Host-side run records: metrics.jsonl, TensorBoard events, resume truncation, the plot."""

import json
import math

from fpo_jax.run_log import MetricsWriter, plot_learning_curve, to_python


def test_metrics_jsonl_tensorboard_and_resume_truncation(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=True)
    for call in range(4):
        writer.write({"call": call, "env_steps": 100 * call, "loss": 1.0 / (call + 1),
                      "eval/episode_return": float(call) if call % 2 else None})  # fmt: skip
    writer.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["env_steps"] for x in lines] == [0, 100, 200, 300]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))

    resumed = MetricsWriter(tmp_path)
    resumed.load_existing(max_env_steps=100)  # the checkpoint was at env step 100
    assert [r["call"] for r in resumed.history] == [0, 1]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2

    png = plot_learning_curve(writer.history, tmp_path / "curve.png", "test")
    assert png is not None and png.stat().st_size > 1000


def test_to_python_makes_json_safe_values():
    import numpy as np

    assert to_python(np.float32(2.5)) == 2.5
    assert to_python(np.array([1.0, math.nan])) == [1.0, None]
    assert to_python(np.int32(3)) == 3
