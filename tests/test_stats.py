"""The one standard error of the library and the experiment scripts."""

import math

import numpy as np

from fpo_jax.stats import mean_stderr


def test_stderr_is_the_sample_std_over_sqrt_n_and_ignores_nan():
    values = [2.0, 4.0, 9.0, float("nan")]
    mean, stderr = mean_stderr(values)
    finite = [2.0, 4.0, 9.0]
    m = sum(finite) / 3
    sample_var = sum((v - m) ** 2 for v in finite) / (3 - 1)  # ddof=1
    assert math.isclose(mean, m) and math.isclose(stderr, math.sqrt(sample_var / 3))


def test_one_value_has_no_spread_and_none_is_nan():
    assert mean_stderr(np.array([[3.5]])) == (3.5, 0.0)
    assert all(math.isnan(x) for x in mean_stderr([float("nan")]))
