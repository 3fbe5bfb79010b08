"""Interleaved timing: candidates run side by side, one call each per round.

On a shared, noisy machine only what is measured in the same process, close in
time, is comparable; every round runs the candidates in a fresh random order so
that none always follows the same neighbour.
"""

import time

import numpy as np


def interleaved_times(candidates, rounds, *, warmup=1, seed=0):
    """Seconds of every call per candidate: `{name: [seconds of round 0, ...]}`.

    Args:
        candidates: dict of name -> callable taking no arguments; each call must
            block until its work is done (e.g. return `.numpy()` of the result).
        rounds: number of timed calls per candidate.
        warmup: untimed calls per candidate before the first round (tracing).
        seed: seed of the random order of each round.
    """
    for run in candidates.values():
        for _ in range(warmup):
            run()
    names = list(candidates)
    order = np.random.default_rng(seed)
    times = {name: [] for name in names}
    for _ in range(rounds):
        for index in order.permutation(len(names)):
            name = names[index]
            start = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(numerator, denominator):
    """Median and interquartile range (25th, 75th percentile) of round-by-round ratios.

    The rounds of `interleaved_times` pair calls made close in time, so their
    ratios cancel much of the machine's drifting load.
    """
    ratios = np.asarray(numerator) / np.asarray(denominator)
    low, median, high = np.percentile(ratios, [25, 50, 75])
    return float(median), (float(low), float(high))
