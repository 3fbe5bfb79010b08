import math

import pytest

from bnkeras.experiments import stats


def test_student_t_p_values_with_closed_forms():
    # df = 1 is the Cauchy distribution: P(|T| >= 1) = 1/2.
    assert stats.student_t_two_sided_p(1.0, 1.0) == pytest.approx(0.5, abs=1e-12)
    # df = 2: P(|T| >= t) = 1 - t / sqrt(2 + t^2).
    for t in (0.3, 1.0, 4.0):
        assert stats.student_t_two_sided_p(t, 2.0) == pytest.approx(
            1 - t / math.sqrt(2 + t * t), abs=1e-12
        )
    assert stats.student_t_two_sided_p(0.0, 5.0) == pytest.approx(1.0)
    assert stats.student_t_two_sided_p(math.inf, 5.0) == 0.0


def test_welch_t_against_known_value():
    # Reference values from scipy.stats.ttest_ind(a, b, equal_var=False) (SciPy 1.17).
    result = stats.welch_t([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 6.0, 9.0, 10.0, 12.5])
    assert result["t"] == pytest.approx(-2.4154616354885095, rel=1e-12)
    assert result["df"] == pytest.approx(6.796473534271131, rel=1e-12)
    assert result["p"] == pytest.approx(0.04743065864347485, rel=1e-9)
    # Real (non-integer) degrees of freedom: 2 * t.sf(2.5, 7.3) from SciPy.
    assert stats.student_t_two_sided_p(2.5, 7.3) == pytest.approx(0.03965023466560043, rel=1e-9)


def test_welch_t_matches_scipy_when_installed():
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = [0.827, 0.819, 0.835, 0.81], [0.526, 0.507, 0.545]
    ours, theirs = stats.welch_t(a, b), scipy_stats.ttest_ind(a, b, equal_var=False)
    assert ours["t"] == pytest.approx(theirs.statistic, rel=1e-10)
    assert ours["p"] == pytest.approx(theirs.pvalue, rel=1e-8)


def test_welch_t_degenerate_samples():
    assert stats.welch_t([1.0], [2.0, 3.0]) == {"t": None, "df": None, "p": None}
    assert stats.welch_t([1.0, 1.0], [1.0, 1.0])["p"] == 1.0
    assert stats.welch_t([2.0, 2.0], [1.0, 1.0])["p"] == 0.0


def test_mean_sd():
    assert stats.mean_sd([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, math.sqrt(5 / 3)))
    assert stats.mean_sd([7.0]) == (7.0, None)


def test_compare_verdicts():
    high, low = [0.80, 0.82, 0.81], [0.50, 0.52, 0.51]
    supports = stats.compare("x", "a", high, "b", low, +1)
    assert supports["verdict"].startswith("supports the claim")
    assert supports["effect"] == pytest.approx(0.30)
    assert supports["effect_over_spread"] == pytest.approx(0.30 / 0.01)
    assert stats.compare("x", "a", high, "b", low, -1)["verdict"].startswith("contradicts")
    noise = stats.compare("x", "a", [0.5, 0.7, 0.6], "b", [0.55, 0.65, 0.62], +1)
    assert noise["verdict"].startswith("not significant")
    assert stats.compare("x", "a", [0.8], "b", [0.5], +1)["verdict"].startswith("undetermined")


def test_compare_leaves_out_diverged_seeds():
    with_nan = stats.compare("x", "a", [0.8, None, 0.82, math.nan], "b", [0.5, 0.52], +1)
    assert with_nan["mean_a"] == pytest.approx(0.81) and with_nan["p"] is not None
    none_left = stats.compare("x", "a", [None, math.nan], "b", [0.5, 0.52], +1)
    assert none_left["effect"] is None
    assert none_left["verdict"] == "undetermined (no finite values: diverged runs)"
