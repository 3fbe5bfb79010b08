"""Shared checks that every bnkeras layer runs: each layer test calls them.

Each function takes a `make_layer(**overrides)` factory, so a layer test reads
`harness.check_keras_round_trip(make_layer, tmp_path)`.

The checks run on the TensorFlow, JAX and PyTorch backends (`KERAS_BACKEND=jax` or
`torch` runs the layer tests in a process of their own). The backend-specific parts
are the training step with gradients (`tf.GradientTape` / `jax.grad` over a
stateless call / `torch.autograd.grad`) and its compiled form
(`tf.function(jit_compile=True)` / `jax.jit` / `torch.compile`, which is what
Keras's `jit_compile=True` means on each backend); cross-replica statistics
(`check_synchronized`) are `tf.distribute`'s and run on TensorFlow only.

Compare outputs with `assert_allclose` / `assert_array_equal` here rather than
NumPy's: on torch a layer's output requires grad, and NumPy cannot read such a
tensor (`to_numpy` detaches it).
"""

import functools
import json

import keras
import numpy as np
import pytest
from keras import ops

IMAGE_SHAPE = (4, 4, 3)
BACKEND = keras.backend.backend()
ON_TENSORFLOW = BACKEND == "tensorflow"
ON_TORCH = BACKEND == "torch"
# The dtypes a layer's weights may have: float32 statistics, renorm's int step
# (int32 on JAX without 64-bit types).
WEIGHT_DTYPES = ("float32", "int64", "int32")


def to_numpy(x):
    """`x` (a tensor of any backend, a Keras variable, an array or a number) as a
    NumPy array; a torch tensor that requires grad is detached first."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, keras.Variable):
        x = x.value
    return np.asarray(ops.convert_to_numpy(x))


def assert_allclose(actual, desired, **kwargs):
    """`np.testing.assert_allclose` on tensors of any backend."""
    np.testing.assert_allclose(to_numpy(actual), to_numpy(desired), **kwargs)


def assert_array_equal(actual, desired, **kwargs):
    """`np.testing.assert_array_equal` on tensors of any backend."""
    np.testing.assert_array_equal(to_numpy(actual), to_numpy(desired), **kwargs)


def thinned_off_tensorflow(cases, keep):
    """`cases` for `pytest.mark.parametrize`: all of them on TensorFlow, where
    layouts take different kernels (fused or not), and on torch, where these tests
    run op by op and cost little; on JAX, where one `keras.ops` path serves every
    layout and each case compiles, only the cases at the indices `keep` (the others
    skip), which keeps the JAX process's compilations few."""
    reason = f"fewer layouts on {BACKEND}: one keras.ops path serves them all"
    return [
        case
        if ON_TENSORFLOW or ON_TORCH or i in keep
        else pytest.param(*case, marks=pytest.mark.skip(reason=reason))
        for i, case in enumerate(cases)
    ]


# Keras's jit_compile=True is torch.compile on torch. There, renorm's gradients come out
# wrong: renorm reads its statistics, then updates them in place, and the min-cut
# partitioner of torch's AOTAutograd recomputes the read in the backward pass, after the
# update (torch 2.13; pytorch/pytorch#197039, open; `aot_eager` gives the right values,
# and Keras's own BatchNormalization(renorm=True) is just as wrong). Outputs and moving
# statistics are right; the checks that compare compiled gradients fail.
TORCH_COMPILE_RENORM_BUG = (
    "torch.compile (Keras's jit_compile=True on torch) computes renorm's gradients from "
    "statistics updated after they were read (pytorch/pytorch#197039; Keras's own "
    "renorm=True too)"
)


def checks_with_torch_xfails(xfails):
    """`CHECKS` for `pytest.mark.parametrize`, those in `xfails` ({name: reason})
    marked as expected (strict) failures on torch."""
    return [
        pytest.param(name, marks=pytest.mark.xfail(reason=xfails[name], strict=True))
        if ON_TORCH and name in xfails
        else name
        for name in CHECKS
    ]


def tensorflow_only(reason):
    """Skips the calling test on other backends, saying what it checks."""
    if not ON_TENSORFLOW:
        pytest.skip(f"TensorFlow only ({reason}); backend is {BACKEND}")


def randomize_statistics(layer, rng):
    """Random gamma, beta and moving statistics (defaults hide wrong formulas)."""
    for weight in layer.weights:
        if weight.dtype.startswith("int"):
            continue
        if "variance" in weight.name or "stddev" in weight.name:
            value = rng.uniform(0.5, 2.0, weight.shape)
        else:
            value = rng.normal(0.0, 1.0, weight.shape)
        weight.assign(value.astype(weight.dtype))


def random_batch(rng, shape, mean=1.5, std=2.0):
    return (rng.normal(mean, std, shape)).astype("float32")


def _weighted_sum(y):
    # A weight per element: a per-channel one would make d/dgamma exactly 0.
    weights = ops.reshape(ops.cos(ops.arange(int(np.prod(y.shape)), dtype=y.dtype)), y.shape)
    return ops.sum(y * weights)


def training_gradients(layer, x, call=None):
    """(gradients wrt x and the trainable weights, output) of a weighted sum of the
    training output; `call(t)` defaults to `layer(t, training=True)`. The layer's
    state (moving statistics) is updated as by the call."""
    if call is None:
        call = lambda t: layer(t, training=True)  # noqa: E731
    if ON_TENSORFLOW:
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = call(x)
            weights = tf.reshape(tf.cos(tf.range(tf.size(y), dtype=y.dtype)), tf.shape(y))
            loss = tf.reduce_sum(y * weights)
        return tape.gradient(loss, [x, *layer.trainable_weights]), y
    if ON_TORCH:
        import torch

        x = ops.convert_to_tensor(x).requires_grad_()
        y = call(x)
        trainable = [v.value for v in layer.trainable_weights]
        return list(torch.autograd.grad(_weighted_sum(y), [x, *trainable])), y
    import jax

    trainable = layer.trainable_weights

    def loss(x, values):
        with keras.StatelessScope(state_mapping=list(zip(trainable, values, strict=True))) as scope:
            y = call(x)
        state = [(v, scope.get_current_value(v)) for v in layer.non_trainable_weights]
        return _weighted_sum(y), (y, state)

    grad = jax.grad(loss, argnums=(0, 1), has_aux=True)
    (dx, dweights), (y, state) = grad(ops.convert_to_tensor(x), [v.value for v in trainable])
    for variable, value in state:
        if value is not None:
            variable.assign(value)
    return [dx, *dweights], y


def check_config_round_trip(make_layer):
    layer = make_layer(name="norm")
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # The generic Keras path (registered name) must find the class.
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"].startswith("bnkeras>")
    # Through JSON, as a saved file stores it (Keras's own run_layer_test does this).
    serialized = json.loads(json.dumps(serialized))
    again = keras.saving.deserialize_keras_object(serialized)
    assert type(again) is type(layer)
    assert again.get_config() == config


def _small_model(make_layer):
    inputs = keras.Input(IMAGE_SHAPE)
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = make_layer(name="norm")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2)(x)
    return keras.Model(inputs, outputs)


def check_keras_round_trip(make_layer, tmp_path, rng):
    model = _small_model(make_layer)
    randomize_statistics(model.get_layer("norm"), rng)
    x = random_batch(rng, (8, *IMAGE_SHAPE))
    model(x, training=True)  # move the state (e.g. renorm's step) off its initial value
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("norm")) is type(model.get_layer("norm"))
    for a, b in zip(model.weights, loaded.weights, strict=True):
        assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert_array_equal(model(x, training=False), loaded(x, training=False))
    assert_allclose(model(x, training=True), loaded(x, training=True), atol=1e-6)


def check_weight_counts(make_layer, trainable, non_trainable, channels=3):
    layer = make_layer()
    layer.build((None, 5, channels))
    assert len(layer.trainable_weights) == trainable
    assert len(layer.non_trainable_weights) == non_trainable
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        assert tuple(getattr(layer, name).shape) == (channels,)
    frozen = make_layer(center=False, scale=False)
    frozen.build((None, 5, channels))
    assert len(frozen.trainable_weights) == 0


def check_fit_step(make_layer, rng):
    model = _small_model(make_layer)
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    norm = model.get_layer("norm")
    before = np.asarray(norm.moving_mean).copy()
    x = random_batch(rng, (16, *IMAGE_SHAPE))
    y = rng.integers(0, 2, (16,))
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(before, np.asarray(norm.moving_mean))
    # trainable=False: inference mode, state frozen even with training=True.
    norm.trainable = False
    frozen = np.asarray(norm.moving_mean).copy()
    features = random_batch(rng, (8, 4, 4, 4))
    out = norm(features, training=True)
    ref = norm(features, training=False)
    assert_allclose(out, ref)
    assert_array_equal(frozen, np.asarray(norm.moving_mean))


def check_xla_fit(make_layer, rng):
    """`fit` and `predict` with `jit_compile=True`; 10 examples in batches of 4 give a
    batch size unknown at trace time and a last batch of 2."""
    model = _small_model(make_layer)
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    norm = model.get_layer("norm")
    before = np.asarray(norm.moving_mean).copy()
    x = random_batch(rng, (10, *IMAGE_SHAPE))
    history = model.fit(x, rng.integers(0, 2, (10,)), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(before, np.asarray(norm.moving_mean))
    assert_allclose(model.predict(x, batch_size=4, verbose=0), model(x), atol=1e-5)


def _train_step(layer, shape, jit_compile, mask_shape=None):
    """A custom training step: `step(x[, mask])` -> [output, input and weight
    gradients], updating the layer's state; a tf.function on TensorFlow (graph or
    XLA; `shape` may have an unknown batch size), on JAX a `jax.grad` of a
    stateless call, run op by op or compiled whole by `jax.jit`."""
    if ON_TORCH:
        return _torch_train_step(layer, jit_compile)
    if not ON_TENSORFLOW:
        return _jax_train_step(layer, jit_compile)
    import tensorflow as tf

    signature = [tf.TensorSpec(shape)]
    if mask_shape is not None:
        signature.append(tf.TensorSpec(mask_shape, tf.bool))

    @tf.function(jit_compile=jit_compile, input_signature=signature)
    def step(x, mask=None):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True, mask=mask)
            loss = tf.reduce_sum(y * tf.cos(y))
        return [y, *tape.gradient(loss, [x, *layer.trainable_weights])]

    return step


def _torch_compile(function):
    """`torch.compile(function)`, as Keras compiles a step with `jit_compile=True` on
    torch (TorchDynamo and the Inductor backend)."""
    import torch

    return torch.compile(function)


def _torch_train_step(layer, jit_compile):
    """The layer's training call run op by op, or compiled by `torch.compile`; the
    gradients by `torch.autograd.grad` (outside the compiled call, as Keras's torch
    train step takes them with `loss.backward()`). The call updates the state."""
    import torch

    forward = lambda x, mask: layer(x, training=True, mask=mask)  # noqa: E731
    if jit_compile:
        forward = _torch_compile(forward)

    def run(x, mask=None):
        x = ops.convert_to_tensor(x).requires_grad_()
        y = forward(x, None if mask is None else ops.convert_to_tensor(mask))
        loss = ops.sum(y * ops.cos(y))
        trainable = [v.value for v in layer.trainable_variables]
        return [y, *torch.autograd.grad(loss, [x, *trainable])]

    return run


def _jax_train_step(layer, jit_compile):
    import jax

    def step(trainable, non_trainable, x, mask):
        def loss(x, trainable):
            y, state = layer.stateless_call(trainable, non_trainable, x, training=True, mask=mask)
            return ops.sum(y * ops.cos(y)), (y, state)

        (dx, dweights), (y, state) = jax.grad(loss, argnums=(0, 1), has_aux=True)(x, trainable)
        return [y, dx, *dweights], state

    if jit_compile:
        step = jax.jit(step)

    def run(x, mask=None):
        outputs, state = step(
            [v.value for v in layer.trainable_variables],
            [v.value for v in layer.non_trainable_variables],
            ops.convert_to_tensor(x),
            None if mask is None else ops.convert_to_tensor(mask),
        )
        for variable, value in zip(layer.non_trainable_variables, state, strict=True):
            variable.assign(value)
        return outputs

    return run


def _forward(layer, shape, jit_compile=False):
    """`layer(x, training=True)` compiled for `shape` (a tf.function, or jax.jit of a
    stateless call), updating the layer's state."""
    if ON_TENSORFLOW:
        import tensorflow as tf

        return tf.function(
            lambda t: layer(t, training=True),
            input_signature=[tf.TensorSpec(shape)],
            jit_compile=jit_compile,
        )
    if ON_TORCH:
        forward = lambda t: layer(t, training=True)  # noqa: E731
        return _torch_compile(forward) if jit_compile else forward
    import jax

    if not layer.built:
        layer.build(shape)

    def forward(trainable, non_trainable, x):
        return layer.stateless_call(trainable, non_trainable, x, training=True)

    if jit_compile:
        forward = jax.jit(forward)

    def run(x):
        y, state = forward(
            [v.value for v in layer.trainable_variables],
            [v.value for v in layer.non_trainable_variables],
            ops.convert_to_tensor(x),
        )
        for variable, value in zip(layer.non_trainable_variables, state, strict=True):
            variable.assign(value)
        return y

    return run


def check_xla_equals_graph(make_layer, rng, batches=None, inner=IMAGE_SHAPE, masked=False):
    """A `tf.function(jit_compile=True)` training step and XLA inference give the
    graph's outputs, gradients and moving statistics (1e-5), for a static batch and
    a batch size unknown at trace time, over consecutive steps. Ghost layers get
    whole ghost batches, a remainder and one part (8, 10, 3); the batch size takes
    no other path, so other layers get two steps of 8 (one compilation a mode).
    On JAX and torch every shape is static and one path serves all batch sizes: the
    step run op by op against `jax.jit` / `torch.compile`, two steps of one size
    (ghost layers: 10)."""
    if batches is None:
        ghost = getattr(make_layer(), "virtual_batch_size", None)
        if not ON_TENSORFLOW:  # one path: whole ghost batches and a remainder, twice
            batches = (10, 10) if ghost else (8, 8)
        else:
            batches = (8, 10, 3) if ghost else (8, 8)
    for static in (True, False) if ON_TENSORFLOW else (True,):
        layers = [make_layer(), make_layer()]
        for layer in layers:
            layer.build((None, *inner))
        randomize_statistics(layers[0], rng)
        layers[1].set_weights(layers[0].get_weights())
        steps = {}
        for batch in batches:
            shape = (batch if static else None, *inner)
            x = random_batch(rng, (batch, *inner))
            args = [x]
            mask_shape = None
            if masked:
                mask_shape = shape[:-1]
                args.append(rng.random((batch, *inner[:-1])) > 0.3)
            if shape not in steps:
                steps[shape] = [
                    _train_step(layer, shape, jit, mask_shape)
                    for layer, jit in zip(layers, (False, True), strict=True)
                ]
            results = [step(*args) for step in steps[shape]]
            for a, b in zip(*results, strict=True):
                # 1e-5 of the largest value: gradients are sums with cancellation.
                scale = max(1.0, float(np.max(np.abs(to_numpy(b)))))
                assert_allclose(a, b, atol=1e-5 * scale, rtol=1e-5)
            for a, b in zip(layers[0].weights, layers[1].weights, strict=True):
                assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=a.path)
        # Inference reads only the moving statistics: one batch size tells.
        assert_allclose(_jit_inference(layers[1])(x), layers[0](x), atol=1e-5, rtol=1e-5)


def _jit_inference(layer):
    if ON_TENSORFLOW:
        import tensorflow as tf

        return tf.function(lambda t: layer(t), jit_compile=True)
    if ON_TORCH:
        infer = _torch_compile(lambda t: layer(t))
        return lambda x: infer(ops.convert_to_tensor(x))
    import jax

    infer = jax.jit(lambda t, nt, x: layer.stateless_call(t, nt, x)[0])
    return lambda x: infer(
        [v.value for v in layer.trainable_variables],
        [v.value for v in layer.non_trainable_variables],
        x,
    )


def check_integer_inputs(make_layer, rng):
    """uint8/int32 inputs are normalized in float32, as by Keras's BatchNormalization."""
    x = rng.integers(0, 256, (8, *IMAGE_SHAPE))
    for dtype in ("uint8", "int32"):
        layer, reference = make_layer(), make_layer()
        for each in (layer, reference):
            each.build(x.shape)
        randomize_statistics(reference, rng)
        layer.set_weights(reference.get_weights())
        for training in (True, False):
            out = layer(x.astype(dtype), training=training)
            assert keras.backend.standardize_dtype(out.dtype) == "float32"
            expected = reference(x.astype("float32"), training=training)
            assert_allclose(out, expected, atol=1e-5, rtol=1e-6)


def check_empty_batch(make_layer):
    """An empty training batch does what Keras's BatchNormalization does with one: an
    empty output and NaN moving statistics (static and run-time batch size)."""
    for inner in (IMAGE_SHAPE, (6, 3)):
        x = np.zeros((0, *inner), "float32")
        expected = keras.layers.BatchNormalization()
        expected(x, training=True)
        signatures = ((0, *inner), (None, *inner)) if ON_TENSORFLOW else ((0, *inner),)
        for signature in signatures:
            layer = make_layer()
            step = _forward(layer, signature)
            assert tuple(step(x).shape) == x.shape
            for name in ("moving_mean", "moving_variance"):
                assert_array_equal(
                    getattr(layer, name), getattr(expected, name), err_msg=f"{signature} {name}"
                )


def check_mixed_precision(make_layer, rng, policy="mixed_float16"):
    x = random_batch(rng, (8, *IMAGE_SHAPE))
    reference = make_layer()
    reference.build(x.shape)
    randomize_statistics(reference, rng)
    layer = make_layer(dtype=policy)
    layer.build(x.shape)
    layer.set_weights(reference.get_weights())
    for weight in layer.weights:
        assert weight.dtype in WEIGHT_DTYPES, weight.path
    half = keras.mixed_precision.Policy(policy).compute_dtype
    tolerance = 2e-2 if half == "float16" else 8e-2
    for training in (True, False):
        out = layer(ops.cast(x, half), training=training)
        assert keras.backend.standardize_dtype(out.dtype) == half
        expected = reference(ops.cast(ops.cast(x, half), "float32"), training=training)
        assert_allclose(ops.cast(out, "float32"), expected, atol=tolerance, rtol=tolerance)
    for weight in layer.weights:
        assert weight.dtype in WEIGHT_DTYPES


def check_masking(make_layer, rng):
    """Masked time steps are left out of the statistics: equal to the unmasked subset."""
    x = random_batch(rng, (4, 6, 3))
    mask = np.ones((4, 6), bool)
    mask[:, 4:] = False
    masked = make_layer()
    out = masked(ops.convert_to_tensor(x), training=True, mask=ops.convert_to_tensor(mask))
    plain = make_layer()
    expected = plain(ops.convert_to_tensor(x[:, :4]), training=True)
    assert_allclose(to_numpy(out)[:, :4], expected, atol=1e-5)
    assert_allclose(masked.moving_mean, plain.moving_mean, atol=1e-6)
    assert_allclose(masked.moving_variance, plain.moving_variance, atol=1e-6)
    # The mask flows through to the next layer (Keras masking protocol).
    inputs = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(10, 3, mask_zero=True)(inputs)
    h = make_layer()(h)
    assert h._keras_mask is not None


def check_model_kinds(make_layer, rng):
    """Sequential, functional and subclassed models give the same inference outputs."""
    x = random_batch(rng, (4, 5, 3))
    layer = make_layer()
    layer.build(x.shape)
    randomize_statistics(layer, rng)
    expected = layer(x, training=False)

    sequential = keras.Sequential([keras.Input((5, 3)), layer])
    inputs = keras.Input((5, 3))
    functional = keras.Model(inputs, layer(inputs))

    class Subclassed(keras.Model):
        def __init__(self, norm):
            super().__init__()
            self.norm = norm

        def call(self, x, training=None):
            return self.norm(x, training=training)

    for model in (sequential, functional, Subclassed(layer)):
        assert_allclose(model(x, training=False), expected)
        assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)


@functools.cache
def mirrored_strategy():
    """One MirroredStrategy on the 2 logical CPUs for the whole session: separate
    strategy objects in one process reuse collective keys and clash."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def check_synchronized(make_layer, rng, global_batch=16, control=True):
    """`synchronized=True` under MirroredStrategy on 2 logical CPUs equals one device
    on the global batch; without synchronization the replicas' statistics differ."""
    tensorflow_only("tf.distribute's MirroredStrategy")
    import tensorflow as tf

    strategy = mirrored_strategy()
    x = random_batch(rng, (global_batch, *IMAGE_SHAPE))
    x[: global_batch // 2] += 3.0  # the replicas see different data
    single = make_layer()
    single.build(x.shape)
    randomize_statistics(single, rng)
    weights = single.get_weights()
    expected = single(x, training=True)

    def run(synchronized):
        with strategy.scope():
            layer = make_layer(synchronized=synchronized)
            layer.build(x.shape)
            layer.set_weights(weights)
        dataset = tf.data.Dataset.from_tensor_slices(x).batch(global_batch)
        batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

        @tf.function
        def step(batch):
            return strategy.run(lambda b: layer(b, training=True), args=(batch,))

        out = np.concatenate(
            [np.asarray(t) for t in strategy.experimental_local_results(step(batch))]
        )
        return out, layer

    out, layer = run(True)
    assert_allclose(out, expected, atol=1e-5)
    for a, b in zip(layer.weights, single.weights, strict=True):
        assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, err_msg=a.path)
    if control:  # the check can fail: local statistics give other outputs or updates
        # (renorm's output does not depend on the batch's statistics while r and d
        # are inside their clips; its moving variance still does).
        unsynchronized, layer = run(False)
        assert not np.allclose(unsynchronized, expected, atol=1e-3) or not all(
            np.allclose(np.asarray(a), np.asarray(b), atol=1e-3)
            for a, b in zip(layer.weights, single.weights, strict=True)
        )


def _skip_xla_fit():
    if ON_TORCH:
        pytest.skip(
            "fit with jit_compile=True is torch.compile of the whole model on torch, ~100 s "
            "of CPU a model here: xla_equals_graph compiles the layer's training step with "
            "torch.compile instead, and test_bias_correction_in_compiled_fit runs such a fit"
        )
    # on JAX, fit always compiles with jax.jit: fit_step covers it
    tensorflow_only("fit with jit_compile=True")


# name -> check(make_layer, tmp_path, rng, trainable, non_trainable, sync_control). A layer's
# test_harness is parametrized over them (`@pytest.mark.parametrize("check", CHECKS)`), so a
# failing check names itself and hides none of the others.
CHECKS = {
    "config_round_trip": lambda make, tmp, rng, **_: check_config_round_trip(make),
    "keras_round_trip": lambda make, tmp, rng, **_: check_keras_round_trip(make, tmp, rng),
    "weight_counts": lambda make, tmp, rng, trainable, non_trainable, **_: check_weight_counts(
        make, trainable, non_trainable
    ),
    "fit_step": lambda make, tmp, rng, **_: check_fit_step(make, rng),
    "xla_fit": lambda make, tmp, rng, **_: (_skip_xla_fit(), check_xla_fit(make, rng)),
    "xla_equals_graph": lambda make, tmp, rng, **_: check_xla_equals_graph(make, rng),
    "xla_equals_graph_masked": lambda make, tmp, rng, **_: check_xla_equals_graph(
        make, rng, inner=(6, 3), masked=True
    ),
    "integer_inputs": lambda make, tmp, rng, **_: check_integer_inputs(make, rng),
    "empty_batch": lambda make, tmp, rng, **_: check_empty_batch(make),
    "mixed_float16": lambda make, tmp, rng, **_: check_mixed_precision(make, rng),
    "mixed_bfloat16": lambda make, tmp, rng, **_: check_mixed_precision(
        make, rng, "mixed_bfloat16"
    ),
    "masking": lambda make, tmp, rng, **_: check_masking(make, rng),
    "model_kinds": lambda make, tmp, rng, **_: check_model_kinds(make, rng),
    "synchronized": lambda make, tmp, rng, sync_control, **_: (
        tensorflow_only("tf.distribute's replica contexts"),
        check_synchronized(make, rng, control=sync_control),
    ),
}


def run_check(name, make_layer, tmp_path, rng, trainable=2, non_trainable=2, sync_control=True):
    """The harness check `name` (a key of CHECKS) on the layers `make_layer(**kwargs)` makes."""
    CHECKS[name](
        make_layer,
        tmp_path,
        rng,
        trainable=trainable,
        non_trainable=non_trainable,
        sync_control=sync_control,
    )


def run_all(make_layer, tmp_path, rng, **options):
    """Every check in one call (a layer's test_harness parametrizes over CHECKS instead);
    the TensorFlow-only checks are left out on other backends."""
    for name in CHECKS:
        if ON_TENSORFLOW or name not in ("xla_fit", "synchronized"):
            run_check(name, make_layer, tmp_path, rng, **options)
