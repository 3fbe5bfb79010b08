import numpy as np
import tensorflow as tf

from bnkeras.experiments import models


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
