import math

import numpy as np
import pytest

from bnkeras.experiments import lr, training
from bnkeras.experiments.data import Data


def test_best_rate_is_chosen_by_validation_accuracy():
    rates = [0.003, 0.01, 0.03, 0.1]
    assert lr.best_rate(rates, [0.05, 0.06, 0.40, 0.30]) == 0.03
    # The old baseline was the fixed base rate (the first), at chance here: not its best rate.
    assert lr.best_rate(rates, [0.05, 0.06, 0.40, 0.30]) != rates[0]


def test_best_rate_never_picks_a_diverged_run_and_breaks_ties_low():
    rates = [0.01, 0.1, 1.0]
    assert lr.best_rate(rates, [0.2, math.nan, None]) == 0.01
    assert lr.best_rate(rates, [0.3, 0.3, 0.1]) == 0.01
    with pytest.raises(ValueError, match="one accuracy per rate"):
        lr.best_rate(rates, [0.3, 0.3])


def test_holdout_validates_on_training_examples_only():
    x_train = np.arange(10, dtype=np.float32)[:, None]
    y_train = np.arange(10) % 2
    x_test = np.full((4, 1), -1.0, np.float32)
    full = Data(x_train, y_train, x_test, np.zeros(4))
    kept, validation = training.holdout(full, 3)
    np.testing.assert_array_equal(kept.x_train[:, 0], np.arange(7))
    np.testing.assert_array_equal(kept.x_test, x_test)  # the real test set, for reporting
    np.testing.assert_array_equal(validation.x_train, kept.x_train)
    np.testing.assert_array_equal(validation.x_test[:, 0], [7, 8, 9])  # held-out training data
    assert not np.isin(x_test, validation.x_test).any()
    with pytest.raises(ValueError, match="count must be in"):
        training.holdout(full, 10)


def test_protocol_reads_the_best_rate_baseline_and_counts_divergences():
    names = lr.PROTOCOL.metric_names()
    assert "accuracy_none_best" in names and "accuracy_none_x1" not in names
    (fisher,) = [c.comparison for c in lr.PROTOCOL.claims if c.comparison.test == "fisher"]
    assert (fisher.a, fisher.b, fisher.direction) == (
        "diverged_none_x30",
        "diverged_bn_x30",
        "greater",
    )
    assert all(c.preconditions for c in lr.PROTOCOL.claims)  # the baseline must train


def test_diverged_counts_nan_and_runs_stuck_at_a_uniform_guess():
    uniform = math.log(20)
    assert lr.diverged({"diverged": True, "train_loss": [2.0, math.nan]})
    assert lr.diverged({"diverged": False, "train_loss": [2.9, uniform + 0.01]})
    assert not lr.diverged({"diverged": False, "train_loss": [2.9, 2.5]})
    # The old rule (a non-finite loss only) calls the stuck run trained.
    stuck = {"diverged": False, "train_loss": [40.0, uniform]}
    assert lr.diverged(stuck) and not stuck["diverged"]
