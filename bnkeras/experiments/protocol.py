"""An experiment's protocol: its claims, metrics, comparisons and preconditions, fixed before the runs.

Each experiment module defines `PROTOCOL`, a `Protocol`. The runner measures
every `Claim` of it on the seeds' metrics (`stats.evaluate`) and gives each
claim one verdict: supported, contradicted, inconclusive (with its interval) or
"precondition not met". A `Precondition` is what must hold for the comparison
to test the claim at all (e.g. "BN on microbatches loses accuracy" before asking
whether renorm recovers it); it is measured on the same seeds, and when its 95%
interval does not show it, the claim gets no verdict.

Metric names (`Comparison.a`, `.b`) are keys of the `metrics` that the
experiment's `run_seed` returns; every seed returns the same keys.
"""

from dataclasses import asdict, dataclass, field

# what a comparison's direction says supports the claim
DIRECTIONS = ("greater", "less", "equivalent", "at_least", "at_most")
TESTS = ("welch", "paired", "fisher")


@dataclass(frozen=True)
class Comparison:
    """`a` against `b` (or against the constant `value` when `b` is None).

    Attributes:
        a: Metric name of the first arm.
        b: Metric name of the second arm, or None to compare `a` with `value`.
        direction: What supports the claim: "greater" (a > b), "less" (a < b),
            "equivalent" (|a - b| < margin). For a precondition, "at_least" and
            "at_most" mean a - b > -margin and a - b < margin (a tolerance).
        test: "welch" (independent arms: Welch's unequal-variance t),
            "paired" (both arms are the same network per seed: the t of the
            per-seed differences) or "fisher" (per-seed 0/1 outcomes, e.g.
            diverged runs: Fisher's exact test on the counts).
        margin: The equivalence (or tolerance) margin, in the metric's units.
        value: The reference value when `b` is None.
    """

    a: str
    b: str | None = None
    direction: str = "greater"
    test: str = "welch"
    margin: float | None = None
    value: float = 0.0

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}; got {self.direction!r}")
        if self.test not in TESTS:
            raise ValueError(f"test must be one of {TESTS}; got {self.test!r}")
        needs_margin = self.direction in ("equivalent", "at_least", "at_most")
        if needs_margin != (self.margin is not None):
            raise ValueError(f"margin is needed exactly for {DIRECTIONS[2:]}: {self!r}")
        if self.test == "fisher" and (self.b is None or self.direction not in ("greater", "less")):
            raise ValueError(f"Fisher's test compares two arms' counts by direction: {self!r}")

    def describe(self):
        """E.g. `accuracy_bn - accuracy_none > 0`."""
        right = self.b if self.b is not None else f"{self.value:g}"
        if self.direction == "equivalent":
            return f"|{self.a} - {right}| < {self.margin:g}"
        if self.direction == "at_least":
            return f"{self.a} - {right} > -{self.margin:g}"
        if self.direction == "at_most":
            return f"{self.a} - {right} < {self.margin:g}"
        sign = ">" if self.direction == "greater" else "<"
        return f"{self.a} - {right} {sign} 0"


@dataclass(frozen=True)
class Precondition:
    """What must hold for a claim's comparison to test the claim (checked at 95%)."""

    statement: str
    comparison: Comparison


@dataclass(frozen=True)
class Claim:
    """One claim of a paper and how this experiment measures it.

    Attributes:
        name: A short identifier (unique within the experiment).
        statement: The claim in one sentence, as the paper makes it.
        metric: The metric as the paper defines it (and ours, where they differ), with units.
        comparison: What is compared, how, and which direction supports the claim.
        preconditions: What must hold for the comparison to test the claim.
    """

    name: str
    statement: str
    metric: str
    comparison: Comparison
    preconditions: tuple[Precondition, ...] = ()


@dataclass(frozen=True)
class Protocol:
    """The claims of an experiment, with what limits them and any choice made after seeing data.

    Attributes:
        claims: The claims, each measured and given a verdict.
        limitations: What this laptop-scale setup cannot show (a short paragraph).
        post_hoc: Choices made after seeing data (empty when none), stated in the summary.
    """

    claims: tuple[Claim, ...]
    limitations: str
    post_hoc: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        names = [claim.name for claim in self.claims]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a protocol needs claims with unique names; got {names}")

    def metric_names(self):
        """Every metric a claim or precondition reads."""
        comparisons = [c.comparison for c in self.claims]
        comparisons += [p.comparison for c in self.claims for p in c.preconditions]
        return sorted({n for c in comparisons for n in (c.a, c.b) if n is not None})

    def to_json(self):
        return asdict(self)
