"""The accuracy metrics `bnkeras train` and `bnkeras evaluate` report, under one rule."""

import keras

# Top-5 accuracy is reported only for more classes than this: with 5 or fewer it is 1.0.
TOP5_MIN_CLASSES = 6


def top5_metrics(num_classes):
    """`[TopKCategoricalAccuracy(5, name="top5")]`, or `[]` below `TOP5_MIN_CLASSES` classes."""
    if num_classes < TOP5_MIN_CLASSES:
        return []
    return [keras.metrics.TopKCategoricalAccuracy(5, name="top5")]
