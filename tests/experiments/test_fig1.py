import math

import numpy as np
import pytest

from bnkeras.experiments import fig1


def test_steps_to_level_is_each_arms_first_step_like_for_like():
    steps = [100, 200, 300, 400, 500, 600]
    bn = [0.2, 0.45, 0.5, 0.6, 0.6, 0.6]
    none = [0.1, 0.2, 0.3, 0.41, 0.38, 0.42]
    assert fig1.steps_to_level(steps, bn, 0.4) == 200
    assert fig1.steps_to_level(steps, none, 0.4) == 400
    assert math.isnan(fig1.steps_to_level(steps, none, 0.9))
    like_for_like = fig1.steps_to_level(steps, none, 0.4) / fig1.steps_to_level(steps, bn, 0.4)
    assert like_for_like == 2.0
    # The old speed-up: no BN's last step over BN's first step at no BN's final accuracy.
    old = steps[-1] / fig1.steps_to_level(steps, bn, none[-1])
    assert old == 3.0 != like_for_like


def test_median_drift_in_final_widths_per_unit():
    time = np.linspace(0.0, 1.0, 11)
    # unit 0: median 0 -> 2, width 1 -> 4; unit 1: median constant, width constant 2
    p50 = np.stack([2.0 * time, np.full_like(time, 5.0)], axis=1)
    width = np.stack([1.0 + 3.0 * time, np.full_like(time, 2.0)], axis=1)
    drift = fig1.median_drift(p50 - width / 2, p50, p50 + width / 2)
    np.testing.assert_allclose(drift, [2.0 / 4.0, 0.0])
    # The old normalisation (the mean width over training) gives another number.
    old = (p50[:, 0].max() - p50[:, 0].min()) / width[:, 0].mean()
    assert old == pytest.approx(2.0 / 2.5) and old != pytest.approx(drift[0])


def test_median_drift_of_a_zero_final_width_is_infinite():
    p = np.zeros((3, 1))
    assert np.isinf(fig1.median_drift(p, p + np.array([[0.0], [1.0], [0.0]]), p))[0]


def test_width_ratio_sees_spread_that_the_median_drift_ignores():
    time = np.linspace(0.0, 1.0, 21)
    width = 0.1 * 100.0**time  # 0.1 -> 10: a 100x change of spread around a fixed median
    p15, p50, p85 = -width / 2, np.zeros_like(width), width / 2
    assert fig1.width_ratio(p15, p85) == pytest.approx(2.0)
    assert fig1.median_drift(p15, p50, p85) == 0.0  # location alone says "stable"
    assert fig1.width_ratio(np.zeros(4), np.full(4, 3.0)) == 0.0
    assert np.isinf(fig1.width_ratio(np.zeros(2), np.array([0.0, 1.0])))
