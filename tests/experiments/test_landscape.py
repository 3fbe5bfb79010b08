import math

import numpy as np

from bnkeras.experiments import landscape


def _schedule(losses, levels, per_level, smooth):
    probes = landscape.LevelProbes(levels, per_level, smooth)
    taken = []
    for step, loss in enumerate(losses, start=1):
        level = probes.due()  # before the step, on its batch
        if level is not None:
            taken.append((step, level))
        probes.record(loss)
    return taken, probes.next_level


def test_level_probes_follow_the_smoothed_loss():
    losses = [2.3] * 5 + [1.9] * 5 + [1.4] * 10
    taken, reached = _schedule(losses, [2.0, 1.5, 1.0], per_level=2, smooth=2)
    # mean of the last 2 losses < 2.0 after step 7 ((1.9 + 1.9) / 2), < 1.5 after step 12
    assert taken == [(8, 0), (9, 0), (13, 1), (14, 1)]
    assert reached == 2


def test_level_probes_a_plateau_gives_none_and_a_jump_the_lowest_level():
    assert _schedule([2.3] * 20, [2.0, 1.5], 3, 5) == ([], 0)
    taken, reached = _schedule([2.3, 1.2, 1.2, 1.2, 1.2], [2.0, 1.5], 2, 1)
    assert taken == [(3, 1), (4, 1)] and reached == 2


def test_level_probes_queue_behind_pending_ones():
    taken, _ = _schedule([1.9, 1.4, 1.4, 1.4, 1.4, 1.4], [2.0, 1.5], 2, 1)
    assert taken == [(2, 0), (3, 0), (4, 1), (5, 1)]


def test_matched_median_uses_only_common_levels_and_is_robust_to_spikes():
    levels = [0, 0, 0, 1, 1, 1, 2, 2]
    values = [1.0, 2.0, 100.0, 3.0, 4.0, 5.0, 50.0, 60.0]
    assert landscape.matched_median(levels, values, {0, 1}) == 3.5
    # The old summary, the mean over every probe, is decided by the spikes.
    assert np.mean(values) == 28.125
    assert math.isnan(landscape.matched_median(levels, values, set()))
