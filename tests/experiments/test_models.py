import keras
import numpy as np
import pytest
import tensorflow as tf

import bnkeras
from bnkeras.experiments import ReproduceError, models


def test_noisy_affine_is_its_expectation_in_inference_and_random_in_training(rng):
    x = tf.constant(rng.normal(size=(4, 6)), tf.float32)
    layer = models.NoisyAffine(noise_scale=1.5, noise_sd=0.5, seed=1)
    expected = 1.25 * np.exp(0.125)
    np.testing.assert_allclose(layer(x, training=False).numpy(), expected * x.numpy(), rtol=1e-6)
    ones = layer(tf.ones((20000, 6)), training=True).numpy()
    step = tf.function(lambda: layer(tf.ones((1, 6)), training=True))  # a draw per call
    draws = np.stack([step().numpy() for _ in range(2000)])
    assert len({d.tobytes() for d in draws}) == len(draws)
    # over steps (each with its own channel scales and shifts) the mean is the expectation
    assert abs(draws.mean() - expected) < 0.05
    assert ones.shape == (20000, 6)
    layer = models.NoisyAffine(seed=1)
    first, second = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    assert not np.allclose(first, x.numpy()) and not np.allclose(first, second)


def test_noisy_affine_draws_a_scale_and_shift_per_activation(rng):
    # 4000 examples x 3 positions x 2 channels; x = 0 shows the shift, x = 1 scale + shift.
    layer = models.NoisyAffine(noise_mean=0.5, noise_scale=1.5, noise_sd=0.5, seed=3)
    zeros = layer(tf.zeros((4000, 3, 2)), training=True).numpy()
    # Within a channel the shift differs across examples and positions, with sd noise_sd
    # around the step's mean shift m_c in [-0.5, 0.5].
    np.testing.assert_allclose(zeros.reshape(-1, 2).std(axis=0), 0.5, rtol=0.05)
    assert np.all(np.abs(zeros.reshape(-1, 2).mean(axis=0)) < 0.5 + 0.03)
    assert np.std(zeros[:, 0, 0] - zeros[:, 1, 0]) > 0.5  # positions differ too
    # The old noise (one scale and shift per channel) is an affine map along each
    # channel: here the residual of that fit is as large as the noise.
    x = rng.normal(size=(4000, 3, 2)).astype(np.float32)
    y = layer(tf.constant(x), training=True).numpy()
    column_x, column_y = x[..., 0].ravel(), y[..., 0].ravel()
    slope, intercept = np.polyfit(column_x, column_y, 1)
    residual = column_y - (slope * column_x + intercept)
    assert residual.std() > 0.4


def test_noisy_affine_changes_its_distribution_every_step():
    layer = models.NoisyAffine(noise_mean=0.5, noise_scale=1.5, noise_sd=0.5, seed=5)
    means = [layer(tf.zeros((20000, 4)), training=True).numpy().mean(axis=0) for _ in range(2)]
    # per step the channel means are the drawn shifts m_c (sd of a mean: 0.5/sqrt(20000))
    assert np.all(np.abs(means[0]) <= 0.5 + 0.02)
    assert np.abs(means[0] - means[1]).max() > 0.05
    ones = layer(tf.ones((20000, 4)), training=True).numpy()
    # E[y] = s_c exp(sd^2 / 2) + m_c with s_c in [1, 1.5]: between 0.63 and 2.2
    assert np.all(ones.mean(axis=0) > 1.0 * np.exp(0.125) - 0.5 - 0.03)
    assert np.all(ones.mean(axis=0) < 1.5 * np.exp(0.125) + 0.5 + 0.03)


def test_noisy_affine_rejects_bad_options():
    with pytest.raises(ValueError, match="noise_scale=0.5"):
        models.NoisyAffine(noise_scale=0.5)


def _norm_layers(model):
    return [layer for layer in model.layers if "normalization" in type(layer).__name__.lower()]


def test_apply_norm_builds_norms_through_get_norm_with_the_stated_options():
    inputs = keras.Input((4, 4, 3))
    options = {"momentum": 0.9, "epsilon": 1e-5}
    bn = keras.Model(inputs, models.apply_norm(inputs, "bn", options))
    (layer,) = _norm_layers(bn)
    assert type(layer) is bnkeras.BatchNormalization
    assert (layer.momentum, layer.epsilon) == (0.9, 1e-5)
    defaults = _norm_layers(keras.Model(inputs, models.apply_norm(inputs, "bn")))[0]
    assert (defaults.momentum, defaults.epsilon) == (0.99, 1e-3)
    ghost = _norm_layers(
        keras.Model(inputs, models.apply_norm(inputs, "ghost", {"virtual_batch_size": 8}))
    )[0]
    assert type(ghost) is bnkeras.GhostBatchNormalization and ghost.virtual_batch_size == 8
    renorm_options = {"rmax": 1.5, "dmax": 0.5, "virtual_batch_size": 4, "momentum": 0.95}
    renorm = _norm_layers(keras.Model(inputs, models.apply_norm(inputs, "renorm", renorm_options)))[
        0
    ]
    assert type(renorm) is bnkeras.BatchRenormalization
    assert (renorm.virtual_batch_size, renorm.momentum) == (4, 0.95)
    noisy_options = {**options, "noise_mean": 0.1, "noise_sd": 0.2, "seed": 1}
    noisy = keras.Model(inputs, models.apply_norm(inputs, "noisy-bn", noisy_options))
    (layer,) = _norm_layers(noisy)
    (noise,) = [layer for layer in noisy.layers if isinstance(layer, models.NoisyAffine)]
    assert layer.momentum == 0.9 and (noise.noise_mean, noise.noise_sd) == (0.1, 0.2)
    assert models.apply_norm(inputs, "none", options) is inputs


def test_apply_norm_rejects_an_unknown_norm():
    with pytest.raises(ReproduceError, match="norm='layer'"):
        models.apply_norm(keras.Input((3,)), "layer")
