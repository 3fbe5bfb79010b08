"""Seed statistics: means, standard deviations and Welch's t-test, without SciPy.

The two-sided p-value of Student's t with `df` degrees of freedom (not an
integer for Welch's test) is the regularized incomplete beta function
`I_x(df / 2, 1 / 2)` at `x = df / (df + t^2)`, evaluated with the continued
fraction of Numerical Recipes (section 6.4), accurate to ~1e-12.
"""

import math

ALPHA = 0.05


def mean_sd(values):
    """(mean, sample standard deviation) of `values`; the sd is None for one value."""
    values = [float(v) for v in values]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance)


def _beta_continued_fraction(a, b, x, iterations=300, eps=1e-15):
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, iterations + 1):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return result


def regularized_incomplete_beta(a, b, x):
    """`I_x(a, b)` for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_two_sided_p(t, df):
    """P(|T| >= |t|) for Student's t with `df` (> 0, real) degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def welch_t(a, b):
    """Welch's unequal-variance t-test of mean(a) - mean(b).

    Returns:
        A dict with `t`, `df` and the two-sided `p`; all None when either sample
        has fewer than two values (no spread to compare with).
    """
    (mean_a, sd_a), (mean_b, sd_b) = mean_sd(a), mean_sd(b)
    if sd_a is None or sd_b is None:
        return {"t": None, "df": None, "p": None}
    var_a, var_b = sd_a**2 / len(a), sd_b**2 / len(b)
    standard_error = math.sqrt(var_a + var_b)
    difference = mean_a - mean_b
    if standard_error == 0.0:
        if difference == 0.0:
            return {"t": 0.0, "df": None, "p": 1.0}
        return {"t": math.copysign(math.inf, difference), "df": None, "p": 0.0}
    t = difference / standard_error
    df = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    return {"t": t, "df": df, "p": student_t_two_sided_p(t, df)}


def _finite(values):
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def compare(label, a_name, a, b_name, b, claimed_sign):
    """The effect mean(a) - mean(b) against the seed spread, and what it says of a claim.

    Args:
        label: What is compared, e.g. "final test accuracy, BN - no BN".
        a_name, b_name: Names of the two arms.
        a, b: Per-seed values of the two arms; None and non-finite values
            (diverged runs) are left out.
        claimed_sign: +1 if the paper claims a > b, -1 if it claims a < b.

    Returns:
        A JSON-ready dict: means, sds, `effect`, `effect_over_spread` (the effect
        in units of the pooled seed sd), Welch's `t`, `df`, `p` and `verdict`.
    """
    a, b = _finite(a), _finite(b)
    (mean_a, sd_a), (mean_b, sd_b) = mean_sd(a), mean_sd(b)
    effect = None if mean_a is None or mean_b is None else mean_a - mean_b
    test = welch_t(a, b) if effect is not None else {"t": None, "df": None, "p": None}
    spread = None
    if sd_a is not None and sd_b is not None:
        spread = math.sqrt((sd_a**2 + sd_b**2) / 2.0)
    ratio = None if not spread else effect / spread
    if effect is None:
        verdict = "undetermined (no finite values: diverged runs)"
    elif test["p"] is None:
        verdict = "undetermined (needs >= 2 finite seeds per arm)"
    elif test["p"] >= ALPHA:
        verdict = f"not significant (p = {test['p']:.2g}): effect within seed noise"
    elif effect * claimed_sign > 0:
        verdict = f"supports the claim (p = {test['p']:.2g})"
    else:
        verdict = f"contradicts the claim (p = {test['p']:.2g})"
    return {
        "label": label,
        "a": a_name,
        "b": b_name,
        "mean_a": mean_a,
        "sd_a": sd_a,
        "mean_b": mean_b,
        "sd_b": sd_b,
        "effect": effect,
        "effect_over_spread": ratio,
        "claimed_sign": claimed_sign,
        **test,
        "verdict": verdict,
    }
