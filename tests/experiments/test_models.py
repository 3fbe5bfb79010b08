import numpy as np
import tensorflow as tf

import bnkeras
from bnkeras.experiments import models


def test_microbatch_renorm_without_clipping_is_ghost_bn(rng):
    x = tf.constant(rng.normal(2.0, 3.0, size=(8, 5, 3)), tf.float32)
    renorm = models.MicrobatchRenorm(4, 2, rmax=1.0, dmax=0.0)
    ghost = bnkeras.GhostBatchNormalization(virtual_batch_size=4)
    np.testing.assert_allclose(
        renorm(x, training=True).numpy(), ghost(x, training=True).numpy(), atol=1e-5
    )
    # Inference: plain BN on the moving statistics, as ghost BN.
    np.testing.assert_allclose(renorm(x).numpy(), renorm.inner(x).numpy())


def test_renorm_layer_uses_native_virtual_batches_when_available():
    layer = models.renorm_layer(virtual_batch_size=4, batch_size=8, rmax=1.5, dmax=0.5)
    if models.renorm_has_virtual_batches():
        assert isinstance(layer, bnkeras.BatchRenormalization)
    else:
        assert isinstance(layer, models.MicrobatchRenorm)
        np.testing.assert_allclose(layer.inner.momentum, 0.99**0.5)


def test_noisy_affine_is_identity_in_inference_and_random_in_training(rng):
    x = tf.constant(rng.normal(size=(4, 6)), tf.float32)
    layer = models.NoisyAffine(noise=0.5, seed=1)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())
    first, second = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    assert not np.allclose(first, x.numpy()) and not np.allclose(first, second)
    # One scale and one shift per channel: the map is affine along each column.
    scale = (first[1] - first[0]) / (x.numpy()[1] - x.numpy()[0])
    np.testing.assert_allclose(
        first[2] - first[0], scale * (x.numpy()[2] - x.numpy()[0]), rtol=1e-4
    )
