"""The experiments' small networks, with the norm layer injected by name.

`norm` is one of `"none"`, `"bn"`, `"ghost"`, `"renorm"`, `"noisy-bn"`, with
options in `norm_options` (e.g. `virtual_batch_size`, `rmax`, `dmax`,
`renorm_momentum`, `renorm_bias_correction`, `noise`). Layers before a norm layer have no bias.
"""

import keras

import bnkeras
from bnkeras.experiments import ReproduceError

NORMS = ("none", "bn", "ghost", "renorm", "noisy-bn")


class NoisyAffine(keras.layers.Layer):
    """Random per-channel scale and shift in training (inference: identity).

    The "noisy BN" of Santurkar et al. (2018, section 2.1): after BN, each
    channel is multiplied by `exp(noise * z1)` and shifted by `noise * z2`
    (z1, z2 standard normal), resampled at every training call, so the
    distribution of the next layer's input moves at every step.

    Args:
        noise: Scale of the perturbation (>= 0).
        seed: Seed of the perturbations.
    """

    def __init__(self, noise=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.noise = float(noise)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.noise == 0.0:
            return inputs
        shape = (inputs.shape[-1],)
        scale = keras.ops.exp(self.noise * keras.random.normal(shape, seed=self.seed_generator))
        shift = self.noise * keras.random.normal(shape, seed=self.seed_generator)
        return inputs * keras.ops.cast(scale, inputs.dtype) + keras.ops.cast(shift, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def apply_norm(x, norm, norm_options=None):
    """`x` through the norm layer `norm` (functional API)."""
    options = dict(norm_options or {})
    if norm == "none":
        return x
    if norm == "bn":
        return bnkeras.BatchNormalization()(x)
    if norm == "ghost":
        return bnkeras.GhostBatchNormalization(options["virtual_batch_size"])(x)
    if norm == "renorm":
        return bnkeras.BatchRenormalization(**options)(x)
    if norm == "noisy-bn":
        x = bnkeras.BatchNormalization()(x)
        return NoisyAffine(options.get("noise", 0.5), seed=options.get("seed"))(x)
    raise ReproduceError(f"Unknown norm: valid are {', '.join(NORMS)}. Received: norm={norm!r}")


def mlp(input_shape, num_classes, norm, width=100, depth=3, init_std=0.1):
    """Ioffe & Szegedy's Fig. 1 network: `depth` sigmoid layers of `width` units.

    Weights start from N(0, init_std^2); with a norm layer it sits between each
    linear layer and its sigmoid.

    Returns:
        (model giving logits, probe model giving [logits, last hidden sigmoid input]).
    """
    init = keras.initializers.RandomNormal(stddev=init_std)
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    for _ in range(depth):
        x = keras.layers.Dense(width, use_bias=norm == "none", kernel_initializer=init)(x)
        x = apply_norm(x, norm)
        sigmoid_input = x
        x = keras.activations.sigmoid(x)
    logits = keras.layers.Dense(num_classes, kernel_initializer=init)(x)
    return keras.Model(inputs, logits), keras.Model(inputs, [logits, sigmoid_input])


def vgg(input_shape, num_classes, norm, norm_options=None, widths=(16, 32, 64)):
    """A small VGG-like CNN: per stage two 3x3 conv-norm-ReLU, then 2x2 max pooling."""
    inputs = keras.Input(input_shape)
    x = inputs
    for stage, width in enumerate(widths):
        for _ in range(2):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=norm == "none")(x)
            x = apply_norm(x, norm, norm_options)
            x = keras.layers.ReLU()(x)
        if stage < len(widths) - 1:
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


def cnn1d(input_shape, num_classes, norm, norm_options=None, channels=32):
    """A 1-D CNN for MNIST-1D: three conv(k5)-norm-ReLU (stride 1, 2, 2), a linear head."""
    inputs = keras.Input(input_shape)
    x = inputs
    for strides in (1, 2, 2):
        x = keras.layers.Conv1D(
            channels, 5, strides=strides, padding="same", use_bias=norm == "none"
        )(x)
        x = apply_norm(x, norm, norm_options)
        x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))
