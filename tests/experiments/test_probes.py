import keras
import numpy as np
import pytest
import tensorflow as tf

import bnkeras
from bnkeras.experiments import probes


def _quadratic(hessian, w):
    def loss_and_gradients():
        return 0.5 * tf.tensordot(w, tf.linalg.matvec(hessian, w), 1), [
            tf.linalg.matvec(hessian, w)
        ]

    return loss_and_gradients


def test_landscape_on_quadratic_along_an_eigenvector():
    hessian = tf.constant(np.diag([1.0, 4.0, 9.0]))
    w = tf.Variable([0.0, 0.0, 2.0], dtype=tf.float64)
    measures = probes.landscape([w], _quadratic(hessian, w), [0.01, 0.05, 0.1])
    # g = H w = (0, 0, 18) is an eigenvector: the smoothness is its eigenvalue, 9.
    assert measures["beta_smoothness"] == pytest.approx(9.0, rel=1e-12)
    assert measures["gradient_predictiveness"] == pytest.approx(0.1 * 9.0 * 18.0, rel=1e-12)
    np.testing.assert_array_equal(w.numpy(), [0.0, 0.0, 2.0])  # restored


def test_landscape_on_quadratic_general_direction():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    hessian = q @ np.diag([0.5, 2.0, 3.0, 7.0]) @ q.T
    start = rng.normal(size=4)
    w = tf.Variable(start)
    step_sizes = [0.02, 0.1, 0.3]
    measures = probes.landscape([w], _quadratic(tf.constant(hessian), w), step_sizes)
    g = hessian @ start
    hg = hessian @ g
    # Along -g: L(w - eta g) = L - eta g.g + eta^2 / 2 g.Hg; gradient change = eta H g.
    loss = 0.5 * start @ hessian @ start
    losses = [loss] + [loss - e * g @ g + 0.5 * e * e * g @ hg for e in step_sizes]
    assert measures["loss_variation"] == pytest.approx(max(losses) - min(losses), rel=1e-10)
    assert measures["gradient_predictiveness"] == pytest.approx(0.3 * np.linalg.norm(hg))
    assert measures["beta_smoothness"] == pytest.approx(np.linalg.norm(hg) / np.linalg.norm(g))
    assert measures["beta_smoothness"] <= 7.0
    np.testing.assert_array_equal(w.numpy(), start)


def test_precise_bn_gives_true_averages_and_restores_ema():
    rng = np.random.default_rng(3)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, bnkeras.BatchNormalization(name="bn")(inputs))
    bn = model.get_layer("bn")
    bn.moving_mean.assign([5.0, -5.0, 1.0])
    bn.moving_variance.assign([0.1, 0.2, 0.3])
    mean, scale = np.array([2.0, -1.0, 0.5]), np.array([3.0, 0.5, 1.0])
    batches = [(mean + scale * rng.normal(size=(64, 3))).astype(np.float32) for _ in range(10)]
    with probes.precise_bn(model, iter(batches), num_batches=8):
        used = np.stack(batches[:8])
        np.testing.assert_allclose(bn.moving_mean.numpy(), used.mean(axis=1).mean(0), rtol=1e-5)
        np.testing.assert_allclose(bn.moving_variance.numpy(), used.var(axis=1).mean(0), rtol=1e-4)
        # ... which are close to the data's known statistics.
        np.testing.assert_allclose(bn.moving_mean.numpy(), mean, atol=0.4)
        np.testing.assert_allclose(bn.moving_variance.numpy(), scale**2, rtol=0.2)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), [5.0, -5.0, 1.0])
    np.testing.assert_allclose(bn.moving_variance.numpy(), [0.1, 0.2, 0.3])
