"""Measurements taken during training: precise BN statistics and the loss landscape.

Both work on any list of variables and a `loss_and_gradients()` callable, so
they are tested on problems with known answers (a quadratic loss, data of known
mean and variance) and used unchanged on the experiments' Keras models.
"""

import contextlib

import numpy as np
import tensorflow as tf

import bnkeras
from bnkeras.model_layers import bn_layers


@contextlib.contextmanager
def restored(variables):
    """Restores `variables` to their current values on exit."""
    saved = [tf.identity(v) for v in variables]
    try:
        yield
    finally:
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)


def moving_statistics(model):
    """The moving mean and variance variables of every BN layer of `model`."""
    return [v for layer in bn_layers(model) for v in (layer.moving_mean, layer.moving_variance)]


@contextlib.contextmanager
def precise_bn(model, batches, num_batches):
    """Inside the block, `model`'s BN statistics are precise (true averages over
    `num_batches` of `batches`, via `bnkeras.recalibrate_batchnorm`); on exit the
    training run's moving averages are back."""
    with restored(moving_statistics(model)):
        bnkeras.recalibrate_batchnorm(model, batches, num_batches)
        yield


def _flat_norm(tensors):
    return float(tf.sqrt(sum(tf.reduce_sum(tf.square(t)) for t in tensors)))


def landscape(variables, loss_and_gradients, step_sizes):
    """Santurkar et al. (2018, section 3) measures along the negative gradient.

    At the current point w with loss L and gradient g, for each step size eta
    the loss and gradient at w - eta * g are computed. The variables are
    restored afterwards.

    Args:
        variables: The trainable variables w.
        loss_and_gradients: `f() -> (loss, list of gradients)` at the current
            values of `variables` (on a fixed batch).
        step_sizes: The step sizes eta (> 0).

    Returns:
        A dict: `loss` (at w), `loss_variation` (max - min of the losses at w - eta * g, w
        included), `gradient_predictiveness` (max over eta of ||g(w - eta g) -
        g(w)||) and `beta_smoothness` (max over eta of ||g(w - eta g) - g(w)|| /
        ||eta g||, the effective smoothness; for a quadratic loss it is
        ||H g|| / ||g||, the Hessian's largest eigenvalue when g is its
        eigenvector).
    """
    loss, gradients = loss_and_gradients()
    gradients = [tf.identity(g) for g in gradients]
    gradient_norm = _flat_norm(gradients)
    losses, changes, ratios = [float(loss)], [], []
    with restored(variables):
        start = [tf.identity(v) for v in variables]
        for eta in step_sizes:
            for variable, value, gradient in zip(variables, start, gradients, strict=True):
                variable.assign(value - eta * gradient)
            moved_loss, moved_gradients = loss_and_gradients()
            change = _flat_norm([a - b for a, b in zip(moved_gradients, gradients, strict=True)])
            losses.append(float(moved_loss))
            changes.append(change)
            ratios.append(change / (eta * gradient_norm) if gradient_norm > 0 else np.nan)
    return {
        "loss": float(loss),
        "loss_variation": float(np.max(losses) - np.min(losses)),
        "gradient_predictiveness": float(np.max(changes)),
        "beta_smoothness": float(np.max(ratios)),
    }
