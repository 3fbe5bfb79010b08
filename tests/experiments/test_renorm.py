import numpy as np
import pytest

from bnkeras.experiments import renorm, training


def _labels(classes=20, per_class=50):
    return np.repeat(np.arange(classes), per_class)


def test_noniid_batches_are_16_classes_x_2_images():
    labels = _labels()
    batches = renorm.noniid_batches(labels, renorm.DEFAULT, np.random.default_rng(0))
    for _ in range(50):
        index = next(batches)
        assert len(index) == 32 and len(set(index.tolist())) == 32  # no image twice
        counts = np.bincount(labels[index], minlength=20)
        assert (counts > 0).sum() == 16 and set(counts[counts > 0]) == {2}


def test_the_old_two_class_batches_are_not_the_papers():
    # The old definition (2 classes x 16 images) gives another batch composition.
    labels = _labels()
    old = training.class_group_batches(labels, 2, 16, np.random.default_rng(0))
    counts = np.bincount(labels[next(old)], minlength=20)
    assert (counts > 0).sum() == 2 and set(counts[counts > 0]) == {16}


def test_noniid_batches_refuse_what_cannot_be_drawn():
    with pytest.raises(ValueError, match="multiple of classes_per_batch"):
        renorm.noniid_batches(_labels(), {"batch_size": 30, "classes_per_batch": 16}, None)
    with pytest.raises(ValueError, match="exceeds the data's 10 classes"):
        next(training.class_group_batches(_labels(10), 16, 2, np.random.default_rng(0)))


def test_over_midpoint_says_whether_most_of_the_gap_is_recovered():
    assert renorm.over_midpoint(0.9, 0.6, 1.0) == pytest.approx(0.1)  # 75% recovered
    assert renorm.over_midpoint(0.7, 0.6, 1.0) == pytest.approx(-0.1)  # 25% recovered
    # without a gap nothing is recovered: the precondition decides, not this number
    assert renorm.over_midpoint(0.9, 0.9, 0.9) == pytest.approx(0.0)
