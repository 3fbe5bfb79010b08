"""The experiments' small networks, with the norm layer injected by name.

`norm` is one of `"none"`, `"bn"`, `"ghost"`, `"renorm"`, `"noisy-bn"`, with
options in `norm_options`. Every norm layer is built by `bnkeras.norms.get_norm`
(the one factory that training and the converter use), so its options are
`get_norm`'s: `momentum`, `epsilon`, `virtual_batch_size` (ghost), `rmax`,
`dmax`, `renorm_momentum`, `renorm_bias_correction`, `total_steps` (renorm); and
`virtual_batch_size` for renorm (BN statistics over microbatches), which
`get_norm` does not take and is passed to its layer maker. "noisy-bn" is BN
(`get_norm("bn")`) followed by `NoisyAffine`, whose options are `NOISE_OPTIONS`.
Options not given take `get_norm`'s defaults (momentum 0.99, epsilon 1e-3).
Layers before a norm layer have no bias.
"""

import math

import keras

from bnkeras.experiments import ReproduceError
from bnkeras.norms import get_norm

NORMS = ("none", "bn", "ghost", "renorm", "noisy-bn")
NOISE_OPTIONS = ("noise_mean", "noise_scale", "noise_sd", "seed")


class NoisyAffine(keras.layers.Layer):
    """Per-activation random scale and shift in training; their expectation in inference.

    The "noisy BN" of Santurkar et al. (2018, section 2.1): after BN, every
    activation of every example is perturbed with i.i.d. noise from a
    distribution of non-zero mean and non-unit variance that changes at every
    step. At each training call the step's noise distribution is drawn per
    channel c: a mean shift `m_c ~ U(-noise_mean, noise_mean)` and a mean scale
    `s_c ~ U(1, noise_scale)`; then each activation x (each example, position
    and channel) gets its own scale and shift:

        y = x * s_c * exp(noise_sd * z1) + m_c + noise_sd * z2

    with z1, z2 standard normal, drawn independently for every element. In
    inference the layer applies the noise's expectation (as dropout does), so
    that the next layers see activations of the scale they were trained on:
    `y = x * (1 + noise_scale) / 2 * exp(noise_sd^2 / 2)` (the mean shift is 0).

    Args:
        noise_mean: Range of the per-step mean shift (>= 0).
        noise_scale: Upper end of the per-step mean scale (>= 1).
        noise_sd: Standard deviation of the per-activation noise (>= 0); of
            the shift, and of the scale's logarithm.
        seed: Seed of the perturbations.
    """

    def __init__(self, noise_mean=0.5, noise_scale=1.5, noise_sd=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.noise_mean = float(noise_mean)
        self.noise_scale = float(noise_scale)
        self.noise_sd = float(noise_sd)
        if self.noise_mean < 0 or self.noise_scale < 1 or self.noise_sd < 0:
            raise ValueError(
                "NoisyAffine needs noise_mean >= 0, noise_scale >= 1 and noise_sd >= 0. "
                f"Received: noise_mean={noise_mean}, noise_scale={noise_scale}, "
                f"noise_sd={noise_sd}"
            )
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training:
            expected_scale = (1.0 + self.noise_scale) / 2.0 * math.exp(self.noise_sd**2 / 2.0)
            return inputs * keras.ops.cast(expected_scale, inputs.dtype)
        channels = (inputs.shape[-1],)
        seed = self.seed_generator
        shift = keras.random.uniform(channels, -self.noise_mean, self.noise_mean, seed=seed)
        scale = keras.random.uniform(channels, 1.0, self.noise_scale, seed=seed)
        shape = keras.ops.shape(inputs)
        z1 = keras.random.normal(shape, seed=seed)
        z2 = keras.random.normal(shape, seed=seed)
        scale = scale * keras.ops.exp(self.noise_sd * z1)
        shift = shift + self.noise_sd * z2
        return inputs * keras.ops.cast(scale, inputs.dtype) + keras.ops.cast(shift, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def norm_maker(norm, norm_options=None):
    """A `make() -> Layer` for `norm` from `bnkeras.norms.get_norm`; None for "none".

    For "noisy-bn" the maker builds the BN layer only (`apply_norm` adds the
    noise); `NOISE_OPTIONS` are not passed to `get_norm`.
    """
    if norm not in NORMS:
        raise ReproduceError(f"Unknown norm: valid are {', '.join(NORMS)}. Received: norm={norm!r}")
    options = {k: v for k, v in (norm_options or {}).items() if k not in NOISE_OPTIONS}
    if norm == "none":
        return None
    renorm_microbatch = options.pop("virtual_batch_size", None) if norm == "renorm" else None
    make = get_norm("bn" if norm == "noisy-bn" else norm, **options)
    if renorm_microbatch is None:
        return make
    return lambda **kwargs: make(virtual_batch_size=renorm_microbatch, **kwargs)


def apply_norm(x, norm, norm_options=None):
    """`x` through the norm layer `norm` (functional API), built by `bnkeras.norms.get_norm`."""
    make = norm_maker(norm, norm_options)
    if make is None:
        return x
    x = make()(x)
    if norm == "noisy-bn":
        noise = {k: v for k, v in (norm_options or {}).items() if k in NOISE_OPTIONS}
        x = NoisyAffine(**noise)(x)
    return x


def mlp(input_shape, num_classes, norm, width=100, depth=3, init_std=0.1, norm_options=None):
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
        x = apply_norm(x, norm, norm_options)
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
