"""Seed statistics: effect sizes with confidence intervals, and one verdict per claim.

Every comparison of a protocol (`protocol.Comparison`) is measured on the
per-seed values of two arms (or one arm against a constant):

- `welch`: independent arms (two networks per seed), the difference of means
  with Welch's unequal-variance t interval and test;
- `paired`: both arms are measured on the same network per seed (e.g. EMA vs
  precise statistics): the mean per-seed difference, paired t;
- `fisher`: per-seed 0/1 outcomes (e.g. diverged runs), counted; Fisher's exact
  test, the difference of rates and the conditional odds ratio's exact interval.

The claims of one experiment form a family: their p-values are Holm-adjusted
(step-down), and a claim is supported or contradicted only when its adjusted
p-value is below `ALPHA`; otherwise it is inconclusive, reported with its 95%
interval. An equivalence claim ("about as well") is tested with two one-sided
tests against its margin (TOST), and contradicted when the difference lies
beyond the margin. Preconditions are checked on their own 95% intervals and are
not part of the family. The t distributions, intervals and Fisher's test are
SciPy's (`scipy.stats`).
"""

import math

from bnkeras.experiments import ReproduceError

ALPHA = 0.05
CONFIDENCE = 0.95
VERDICTS = ("supported", "contradicted", "inconclusive", "precondition not met")


def _scipy_stats():
    try:
        from scipy import stats
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != "scipy":
            raise
        raise ReproduceError(
            "`bnkeras reproduce` needs SciPy for its statistics: install the science extra "
            "with `pip install \"bnkeras[science]\"`. Received: missing module 'scipy'"
        ) from None
    return stats


def mean_sd(values):
    """(mean, sample standard deviation) of `values`; the sd is None for one value."""
    values = [float(v) for v in values]
    if not values:
        return None, None
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    variance = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance)


def _finite(value):
    return value is not None and math.isfinite(value)


def arms(comparison, per_seed):
    """The finite per-seed values of both arms (paired: the seeds where both are finite)."""
    a = list(per_seed[comparison.a])
    if comparison.b is None:
        return [float(v) for v in a if _finite(v)], None
    b = list(per_seed[comparison.b])
    if comparison.test == "paired":
        pairs = [(x, y) for x, y in zip(a, b, strict=True) if _finite(x) and _finite(y)]
        return [float(x) for x, _ in pairs], [float(y) for _, y in pairs]
    return [float(v) for v in a if _finite(v)], [float(v) for v in b if _finite(v)]


def _t_test(comparison, a, b, shift=0.0, alternative="two-sided"):
    """SciPy's t test of `effect - shift` (one sample, paired or Welch)."""
    st = _scipy_stats()
    if b is None:
        return st.ttest_1samp(a, comparison.value + shift, alternative=alternative)
    a = [v - shift for v in a]
    if comparison.test == "paired":
        return st.ttest_rel(a, b, alternative=alternative)
    return st.ttest_ind(a, b, equal_var=False, alternative=alternative)


def _spread(comparison, a, b):
    """The standard error of the effect (0 when every arm is constant)."""
    if b is None:
        return mean_sd(a)[1] / math.sqrt(len(a))
    if comparison.test == "paired":
        return mean_sd([x - y for x, y in zip(a, b, strict=True)])[1] / math.sqrt(len(a))
    return math.sqrt(mean_sd(a)[1] ** 2 / len(a) + mean_sd(b)[1] ** 2 / len(b))


def _constant(comparison, a, b):
    """No spread to speak of (up to float rounding, e.g. equal per-seed differences)."""
    scale = max(abs(v) for v in [*a, *(b or []), 1.0])
    return _spread(comparison, a, b) <= 1e-12 * scale


def _p_value(comparison, a, b, effect, shift=0.0, alternative="two-sided"):
    """The t test's p-value, also where SciPy has none (constant arms: no spread)."""
    if _constant(comparison, a, b):
        gap = effect - shift
        holds = {"two-sided": gap != 0.0, "greater": gap > 0.0, "less": gap < 0.0}[alternative]
        return 0.0 if holds else 1.0
    return float(_t_test(comparison, a, b, shift, alternative).pvalue)


def _interval(comparison, a, b, effect, confidence):
    if _constant(comparison, a, b):
        return [effect, effect]
    interval = _t_test(comparison, a, b).confidence_interval(confidence)
    low, high = float(interval.low), float(interval.high)
    if comparison.b is None:
        low, high = low - comparison.value, high - comparison.value
    return [low, high]


def _measure_t(comparison, a, b):
    mean_a, sd_a = mean_sd(a)
    mean_b, sd_b = mean_sd(b) if b is not None else (comparison.value, None)
    effect = mean_a - mean_b
    if comparison.test == "paired":
        spread = mean_sd([x - y for x, y in zip(a, b, strict=True)])[1]
    elif b is None:
        spread = sd_a
    else:
        spread = math.sqrt((sd_a**2 + sd_b**2) / 2.0)
    p = _p_value(comparison, a, b, effect)
    result = {
        "mean_a": mean_a,
        "sd_a": sd_a,
        "mean_b": mean_b,
        "sd_b": sd_b,
        "effect": effect,
        "ci95": _interval(comparison, a, b, effect, CONFIDENCE),
        "effect_over_spread": effect / spread if spread else None,
        "p": p,
    }
    margin = comparison.margin
    if comparison.direction == "equivalent":
        if abs(effect) < margin:  # two one-sided tests: the effect is inside the margin
            result["p_decision"] = max(
                _p_value(comparison, a, b, effect, -margin, "greater"),
                _p_value(comparison, a, b, effect, margin, "less"),
            )
        elif effect > 0:  # beyond the margin
            result["p_decision"] = _p_value(comparison, a, b, effect, margin, "greater")
        else:
            result["p_decision"] = _p_value(comparison, a, b, effect, -margin, "less")
    elif comparison.direction in ("at_least", "at_most"):
        shift, alternative = (
            (-margin, "greater") if comparison.direction == "at_least" else (margin, "less")
        )
        result["p_decision"] = _p_value(comparison, a, b, effect, shift, alternative)
    else:
        result["p_decision"] = p
    return result


def _measure_fisher(comparison, a, b):
    st = _scipy_stats()
    count_a, count_b = int(sum(v != 0 for v in a)), int(sum(v != 0 for v in b))
    table = [[count_a, len(a) - count_a], [count_b, len(b) - count_b]]
    p = float(st.fisher_exact(table).pvalue)
    odds = st.contingency.odds_ratio(table)
    interval = odds.confidence_interval(CONFIDENCE)
    return {
        "count_a": count_a,
        "count_b": count_b,
        "mean_a": count_a / len(a),
        "sd_a": None,
        "mean_b": count_b / len(b),
        "sd_b": None,
        "effect": count_a / len(a) - count_b / len(b),
        "ci95": None,
        "odds_ratio": float(odds.statistic),
        "odds_ratio_ci95": [float(interval.low), float(interval.high)],
        "effect_over_spread": None,
        "p": p,
        "p_decision": p,
    }


def measure(comparison, per_seed):
    """The effect of `comparison` on per-seed values (metric name -> list over seeds).

    Returns:
        A JSON-ready dict: `n_a`, `n_b` (finite seeds), `mean_a`, `sd_a`,
        `mean_b`, `sd_b`, `effect` (a - b; for Fisher's test the difference of
        rates), `ci95` (its 95% interval), `effect_over_spread` (the effect in
        seed standard deviations), `p` (two-sided, no effect) and `p_decision`
        (the p-value the verdict uses: of no effect, or of the equivalence or
        tolerance margin). `measurable` is False, with the reason, when an arm
        has fewer than two finite seeds.
    """
    a, b = arms(comparison, per_seed)
    test = "one-sample" if comparison.b is None else comparison.test
    result = {"comparison": comparison.describe(), "test": test}
    result.update(n_a=len(a), n_b=None if b is None else len(b))
    if len(a) < 2 or (b is not None and len(b) < 2):
        counts = f"{len(a)}" if b is None else f"{len(a)} and {len(b)}"
        return {
            **result,
            "measurable": False,
            "reason": f"needs >= 2 finite seeds per arm (got {counts})",
        }
    measured = _measure_fisher(comparison, a, b) if comparison.test == "fisher" else None
    return {**result, "measurable": True, **(measured or _measure_t(comparison, a, b))}


def holm(p_values):
    """Holm's step-down adjusted p-values, in the input's order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _holds(comparison, measured):
    """Whether the measured effect lies on the side that `comparison.direction` names."""
    effect, margin = measured["effect"], comparison.margin
    return {
        "greater": effect > 0,
        "less": effect < 0,
        "equivalent": margin is not None and abs(effect) < margin,
        "at_least": margin is not None and effect > -margin,
        "at_most": margin is not None and effect < margin,
    }[comparison.direction]


def _number(value):
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) >= 1000 or 0 < abs(value) < 0.001 else f"{value:.3f}"


def effect_text(measured):
    """E.g. `0.231 (95% CI 0.200 to 0.262)` or, for counts, `9/10 vs 0/10`."""
    if not measured["measurable"]:
        return measured["reason"]
    if measured["test"] == "fisher":
        return f"{measured['count_a']}/{measured['n_a']} vs {measured['count_b']}/{measured['n_b']}"
    low, high = measured["ci95"]
    return f"{_number(measured['effect'])} (95% CI {_number(low)} to {_number(high)})"


def check_precondition(precondition, per_seed):
    """A precondition, measured: `met` when its 95% interval (Fisher: p < ALPHA) shows it."""
    measured = measure(precondition.comparison, per_seed)
    if not measured["measurable"]:
        met = False
    elif precondition.comparison.test == "fisher":
        met = measured["p"] < ALPHA and _holds(precondition.comparison, measured)
    else:
        low, high = measured["ci95"]
        met = _holds(precondition.comparison, {**measured, "effect": low}) and _holds(
            precondition.comparison, {**measured, "effect": high}
        )
    return {"statement": precondition.statement, **measured, "met": bool(met)}


def evaluate(protocol, per_seed):
    """Every claim of `protocol` measured on `per_seed` values, with its verdict.

    Returns:
        One JSON-ready dict per claim, in protocol order: `name`, `statement`,
        `metric`, the measurement (`measure`), `preconditions` (each checked),
        `p_holm`, `verdict` (one of `VERDICTS`) and `verdict_text`.
    """
    results = []
    for claim in protocol.claims:
        measured = measure(claim.comparison, per_seed)
        preconditions = [check_precondition(p, per_seed) for p in claim.preconditions]
        results.append(
            {
                "name": claim.name,
                "statement": claim.statement,
                "metric": claim.metric,
                "direction": claim.comparison.direction,
                "margin": claim.comparison.margin,
                **measured,
                "preconditions": preconditions,
            }
        )
    family = [r for r in results if r["measurable"] and all(p["met"] for p in r["preconditions"])]
    for result, adjusted in zip(family, holm([r["p_decision"] for r in family]), strict=True):
        result["p_holm"] = adjusted
    for claim, result in zip(protocol.claims, results, strict=True):
        result["verdict"], result["verdict_text"] = _verdict(claim.comparison, result, len(family))
    return results


def _verdict(comparison, result, family_size):
    unmet = [p for p in result["preconditions"] if not p["met"]]
    if unmet:
        first = unmet[0]
        return "precondition not met", (
            f"precondition not met: {first['statement']} ({first['comparison']}: "
            f"{effect_text(first)})"
        )
    if not result["measurable"]:
        return "inconclusive", f"inconclusive: {result['reason']}"
    p_holm = result["p_holm"]
    holm_text = f"p = {result['p_decision']:.2g}"
    if family_size > 1:
        holm_text += f", Holm-adjusted over {family_size} claims {p_holm:.2g}"
    measured = f"{result['comparison']}: {effect_text(result)}; {holm_text}"
    if p_holm >= ALPHA:
        return "inconclusive", f"inconclusive ({measured})"
    if comparison.direction == "equivalent":
        holds = abs(result["effect"]) < comparison.margin
    else:
        holds = _holds(comparison, result)
    verdict = "supported" if holds else "contradicted"
    return verdict, f"{verdict} ({measured})"
