"""`bnkeras.BatchNormalization`: a drop-in for `keras.layers.BatchNormalization`."""

import keras

from bnkeras.layers.base import BatchNormBase


@keras.saving.register_keras_serializable(package="bnkeras")
class BatchNormalization(BatchNormBase):
    """Batch normalization (Ioffe & Szegedy, 2015), a drop-in for Keras's layer.

    In training (`training=True`, e.g. inside `fit()`), each channel is normalized
    with the mean and the (biased, population) variance of the current batch,
    `y = gamma * (x - mean(x)) / sqrt(var(x) + epsilon) + beta`, and the moving
    statistics are updated as
    `moving_mean = momentum * moving_mean + (1 - momentum) * mean(x)` and
    `moving_variance = momentum * moving_variance + (1 - momentum) * var(x)`.
    In inference (`training=False` or `None`, e.g. `predict()`), the moving
    statistics replace the batch statistics. Arguments, defaults, weights and
    saved files follow `keras.layers.BatchNormalization`.

    Inputs of any rank and channel axis work; float16/bfloat16 inputs are
    normalized in float32 and the output is cast back, and the weights and moving
    statistics stay float32 under a mixed-precision policy. Integer inputs are
    normalized in float32, as by Keras's layer. Every path compiles under XLA.

    Args:
        axis: Integer, the axis to normalize (the features/channel axis), e.g.
            `1` after a `Conv2D` with `data_format="channels_first"`.
        momentum: Momentum of the moving averages, in [0, 1).
        epsilon: Positive float added to the variance.
        center: If True, add the learned offset `beta`.
        scale: If True, multiply by the learned scale `gamma`.
        beta_initializer: Initializer for `beta`.
        gamma_initializer: Initializer for `gamma`.
        moving_mean_initializer: Initializer for the moving mean.
        moving_variance_initializer: Initializer for the moving variance.
        beta_regularizer: Optional regularizer for `beta`.
        gamma_regularizer: Optional regularizer for `gamma`.
        beta_constraint: Optional constraint for `beta`.
        gamma_constraint: Optional constraint for `gamma`.
        synchronized: If True, under a `tf.distribute` strategy the batch
            statistics are computed over the global batch (summed over replicas
            with an all-reduce) instead of each replica's local batch.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Input tensor of any rank.
        training: Python bool. True normalizes with batch statistics and
            updates the moving statistics; False/None uses the moving
            statistics. A layer with `trainable=False` always runs in inference
            mode and never updates its statistics (the Keras convention for
            fine-tuning).
        mask: Optional boolean tensor with one dimension less than `inputs`;
            masked positions are left out of the batch statistics.

    Reference:
        - [Ioffe and Szegedy, 2015](https://arxiv.org/abs/1502.03167).
    """
