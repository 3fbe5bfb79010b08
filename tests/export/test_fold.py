import keras
import numpy as np
import pytest

import bnkeras
from bnkeras.export import count_bn, fold_batchnorm
from bnkeras.model_layers import iter_layers
from tests import harness

BN_KINDS = {
    "keras": keras.layers.BatchNormalization,
    "bn": bnkeras.BatchNormalization,
    "renorm": lambda **kw: bnkeras.BatchRenormalization(rmax=2.0, dmax=1.0, **kw),
    "ghost": lambda **kw: bnkeras.GhostBatchNormalization(virtual_batch_size=2, **kw),
}

# (layer factory, input shape without batch, channels_first supported)
LINEAR = {
    "Conv1D": (lambda df, b: keras.layers.Conv1D(4, 3, data_format=df, use_bias=b), (7, 3), True),
    "Conv2D": (
        lambda df, b: keras.layers.Conv2D(4, 3, padding="same", data_format=df, use_bias=b),
        (5, 5, 3),
        True,
    ),
    "Conv2D_groups": (
        lambda df, b: keras.layers.Conv2D(4, 3, groups=2, data_format=df, use_bias=b),
        (5, 5, 4),
        True,
    ),
    "Conv3D": (
        lambda df, b: keras.layers.Conv3D(4, 2, data_format=df, use_bias=b),
        (4, 4, 4, 2),
        True,
    ),
    "DepthwiseConv1D": (
        lambda df, b: keras.layers.DepthwiseConv1D(
            3, depth_multiplier=2, data_format=df, use_bias=b
        ),
        (6, 3),
        True,
    ),
    "DepthwiseConv2D": (
        lambda df, b: keras.layers.DepthwiseConv2D(
            3, depth_multiplier=2, data_format=df, use_bias=b
        ),
        (5, 5, 3),
        True,
    ),
    "SeparableConv1D": (
        lambda df, b: keras.layers.SeparableConv1D(
            4, 3, depth_multiplier=2, data_format=df, use_bias=b
        ),
        (7, 3),
        True,
    ),
    "SeparableConv2D": (
        lambda df, b: keras.layers.SeparableConv2D(4, 3, data_format=df, use_bias=b),
        (5, 5, 3),
        True,
    ),
    "Conv1DTranspose": (
        lambda df, b: keras.layers.Conv1DTranspose(4, 3, strides=2, data_format=df, use_bias=b),
        (5, 3),
        True,
    ),
    "Conv2DTranspose": (
        lambda df, b: keras.layers.Conv2DTranspose(4, 3, strides=2, data_format=df, use_bias=b),
        (4, 4, 3),
        True,
    ),
    "Conv3DTranspose": (
        lambda df, b: keras.layers.Conv3DTranspose(4, 2, data_format=df, use_bias=b),
        (3, 3, 5, 2),
        True,
    ),
    "Dense": (lambda df, b: keras.layers.Dense(4, use_bias=b), (5,), False),
    "Dense_rank3": (lambda df, b: keras.layers.Dense(4, use_bias=b), (3, 5), False),
}


def randomize(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize(layer, rng)
        elif hasattr(layer, "moving_variance"):
            harness.randomize_statistics(layer, rng)


def assert_same_outputs(model, folded, x, atol=1e-5):
    expected = model(x, training=False)
    got = folded(x, training=False)
    for e, g in zip(keras.tree.flatten(expected), keras.tree.flatten(got), strict=True):
        np.testing.assert_allclose(g, e, atol=atol, rtol=1e-5)


def _cases():
    for name, (_, _, channels_first) in LINEAR.items():
        for i, data_format in enumerate(["channels_last", "channels_first"][: 1 + channels_first]):
            for j, use_bias in enumerate([True, False]):
                for center, scale in [(True, True), (False, True), (True, False), (False, False)]:
                    kind = list(BN_KINDS)[(i + 2 * j + len(name)) % 4]
                    yield pytest.param(
                        name,
                        data_format,
                        use_bias,
                        center,
                        scale,
                        kind,
                        id=f"{name}-{data_format}-bias{use_bias}-c{center:d}s{scale:d}-{kind}",
                    )


@pytest.mark.parametrize("name,data_format,use_bias,center,scale,kind", list(_cases()))
def test_fold_each_layer_kind(name, data_format, use_bias, center, scale, kind, rng):
    make, shape, _ = LINEAR[name]
    if data_format == "channels_first":
        shape = (shape[-1], *shape[:-1])
    axis = 1 if data_format == "channels_first" else -1
    inputs = keras.Input(shape)
    linear = make(data_format, use_bias)
    outputs = BN_KINDS[kind](axis=axis, center=center, scale=scale)(linear(inputs))
    model = keras.Model(inputs, outputs)
    randomize(model, rng)
    before = [np.asarray(w).copy() for w in model.weights]
    result = fold_batchnorm(model)
    assert [e.action for e in result.report.entries] == ["folded"], result.report
    assert count_bn(result.model) == 0
    folded_linear = result.model.get_layer(linear.name)
    assert folded_linear.use_bias
    x = harness.random_batch(rng, (4, *shape))
    assert_same_outputs(model, result.model, x)
    # The input model is left untouched.
    for w, b in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(np.asarray(w), b)
    assert count_bn(model) == 1 and len(linear._inbound_nodes) == 1


@pytest.mark.parametrize("kind", ["functional", "sequential", "nested sequential"])
def test_the_input_model_is_left_untouched_and_shares_nothing(kind, rng):
    layers = [
        keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Dense(2),
    ]
    if kind == "sequential":
        model = keras.Sequential([keras.Input((6, 6, 3)), *layers])
    else:
        inputs = keras.Input((6, 6, 3))
        inner = keras.Sequential(layers) if kind == "nested sequential" else None
        x = inner(inputs) if inner else inputs
        if not inner:
            for layer in layers:
                x = layer(x)
        model = keras.Model(inputs, x)
    randomize(model, rng)
    before = [np.asarray(w).copy() for w in model.weights]
    nodes = [len(layer._inbound_nodes) for layer in layers]
    result = fold_batchnorm(model)
    assert count_bn(result.model) == 0 and count_bn(model) == 1
    x = harness.random_batch(rng, (4, 6, 6, 3))
    assert_same_outputs(model, result.model, x)
    for w, b in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(np.asarray(w), b)
    assert [len(layer._inbound_nodes) for layer in layers] == nodes
    originals = {id(v) for v in model.weights}
    assert not [v.path for v in result.model.weights if id(v) in originals]
    assert not set(map(id, iter_layers(model))) & set(map(id, iter_layers(result.model)))


def _chain(*layers, shape=(6, 6, 3)):
    inputs = keras.Input(shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def test_bn_after_activation_is_refused_with_reason(rng):
    model = _chain(
        keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.ReLU(name="relu"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.GlobalAveragePooling2D(),
    )
    randomize(model, rng)
    result = fold_batchnorm(model)
    (entry,) = result.report.entries
    assert entry.action == "affine" and "relu" in entry.reason and "activation" in entry.reason
    assert isinstance(result.model.get_layer("bn"), bnkeras.ChannelAffine)
    assert count_bn(result.model) == 0
    x = harness.random_batch(rng, (3, 6, 6, 3))
    assert_same_outputs(model, result.model, x)
    # The affine layer is inference-only: training=True gives the same outputs.
    np.testing.assert_allclose(result.model(x, training=True), model(x, training=False), atol=1e-5)


def test_activation_inside_conv_is_refused(rng):
    model = _chain(
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"), bnkeras.BatchNormalization()
    )
    randomize(model, rng)
    (entry,) = fold_batchnorm(model).report.entries
    assert entry.action == "affine" and "conv applies activation 'relu'" in entry.reason


@pytest.mark.parametrize(
    "consumer,folds",
    [
        (keras.layers.Conv2D(5, 3, padding="valid", name="next"), True),
        (keras.layers.Conv2D(5, 1, padding="same", name="next"), True),
        (keras.layers.DepthwiseConv2D(3, name="next"), True),
        (keras.layers.Conv2D(5, 3, padding="same", name="next"), False),  # zero padding: not exact
    ],
)
def test_forward_fold_where_exact(consumer, folds, rng):
    model = _chain(keras.layers.ReLU(), keras.layers.BatchNormalization(name="bn"), consumer)
    randomize(model, rng)
    result = fold_batchnorm(model)
    (entry,) = result.report.entries
    assert entry.action == ("folded_forward" if folds else "affine")
    if folds:
        assert entry.into == "next"
    assert_same_outputs(model, result.model, harness.random_batch(rng, (3, 6, 6, 3)))


def test_forward_fold_into_dense(rng):
    inputs = keras.Input((5,))
    x = keras.layers.BatchNormalization()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(x))
    randomize(model, rng)
    result = fold_batchnorm(model)
    assert result.report.entries[0].action == "folded_forward"
    assert "the model input" in result.report.entries[0].reason
    assert_same_outputs(model, result.model, harness.random_batch(rng, (4, 5)))


def test_conv_output_with_other_consumers_is_refused(rng):
    inputs = keras.Input((6, 6, 3))
    conv = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    bn = keras.layers.BatchNormalization(name="bn")(conv)
    model = keras.Model(inputs, keras.layers.Add(name="add")([conv, bn]))
    randomize(model, rng)
    result = fold_batchnorm(model)
    (entry,) = result.report.entries
    assert entry.action == "affine" and "also used by add" in entry.reason
    assert_same_outputs(model, result.model, harness.random_batch(rng, (2, 6, 6, 3)))


def test_nested_sequential_and_functional_models(rng):
    inner_seq = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(4, 3, use_bias=False),
            bnkeras.BatchNormalization(),
            keras.layers.ReLU(),
        ],
        name="inner_seq",
    )
    i = keras.Input((4, 4, 4))
    inner_fn = keras.Model(
        i, bnkeras.GhostBatchNormalization(4)(keras.layers.Conv2D(4, 1)(i)), name="inner_fn"
    )
    outer_in = keras.Input((6, 6, 3))
    x = inner_fn(inner_seq(outer_in))
    x = keras.layers.BatchNormalization(name="after_nested")(x)  # follows a nested model: refused
    model = keras.Model(outer_in, x)
    randomize(model, rng)
    result = fold_batchnorm(model)
    actions = {e.bn: e.action for e in result.report.entries}
    assert actions["after_nested"] == "affine"
    assert sorted(actions.values()) == ["affine", "folded", "folded"]
    assert count_bn(result.model) == 0
    assert_same_outputs(model, result.model, harness.random_batch(rng, (3, 6, 6, 3)))


def test_shared_layers(rng):
    conv = keras.layers.Conv2D(3, 3, padding="same", name="shared_conv")
    bn = keras.layers.BatchNormalization(name="shared_bn")
    a, b = keras.Input((5, 5, 3)), keras.Input((5, 5, 3))
    ya = keras.layers.BatchNormalization(name="bn_a")(conv(a))
    yb = bn(bn(keras.layers.ReLU()(conv(b))))
    model = keras.Model([a, b], [ya, yb])
    randomize(model, rng)
    result = fold_batchnorm(model)
    reasons = {e.bn: e.reason for e in result.report.entries}
    assert "shared_conv is shared (called 2 times)" in reasons["bn_a"]
    assert "shared (called 2 times)" in reasons["shared_bn"]
    x = [harness.random_batch(rng, (2, 5, 5, 3)), harness.random_batch(rng, (2, 5, 5, 3))]
    assert_same_outputs(model, result.model, x)


def test_sequential_model_with_multiple_kinds(rng):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, use_bias=False),
            bnkeras.BatchRenormalization(),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(6),
            keras.layers.BatchNormalization(),
        ]
    )
    randomize(model, rng)
    result = fold_batchnorm(model)
    assert len(result.report.folded) == 2 and result.report.bn_after == 0
    assert result.report.params_after < result.report.params_before
    assert_same_outputs(model, result.model, harness.random_batch(rng, (3, 8, 8, 3)))


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(bnkeras.export.FoldError, match="subclassed model"):
        fold_batchnorm(Net())


@pytest.mark.parametrize("name", ["ResNet50", "MobileNetV2"])
def test_keras_applications(name, rng):
    build = getattr(keras.applications, name)
    kwargs = {"alpha": 0.35} if name == "MobileNetV2" else {}
    model = build(input_shape=(32, 32, 3), weights=None, classes=5, **kwargs)
    randomize(model, rng)
    result = fold_batchnorm(model)
    assert result.report.bn_after == 0 and not result.report.refused
    assert len(result.report.folded) == count_bn(model)
    assert_same_outputs(model, result.model, harness.random_batch(rng, (2, 32, 32, 3)), atol=1e-4)


def test_mixed_precision_policy_is_kept(rng):
    keras.config.set_dtype_policy("mixed_float16")
    model = _chain(
        keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("linear", dtype="float32"),
    )
    keras.config.set_dtype_policy("float32")
    randomize(model, rng)
    result = fold_batchnorm(model)
    conv = result.model.get_layer("conv")
    assert conv.dtype_policy.name == "mixed_float16" and conv.kernel.dtype == "float32"
    assert_same_outputs(model, result.model, harness.random_batch(rng, (2, 6, 6, 3)), atol=2e-2)


def test_float16_overflow_warns(rng):
    model = _chain(
        keras.layers.Conv2D(4, 3, name="conv", dtype="mixed_float16"),
        keras.layers.BatchNormalization(epsilon=1e-12, dtype="mixed_float16"),
    )
    bn = model.layers[-1]
    bn.moving_variance.assign(np.full(4, 1e-14, "float32"))
    with pytest.warns(
        UserWarning, match="conv: a folded weight reaches .* beyond the float16 range"
    ):
        result = fold_batchnorm(model)
    assert result.report.warnings


def test_channels_first_bias_collision_is_refused(rng):
    """Keras 3.15 adds a channels_first conv bias along the last axis when that axis has
    the channel count; the fold must not create such a bias (verification found this)."""
    from bnkeras.export.fold import keras_misplaces_channels_first_bias

    inputs = keras.Input((3, 6))  # Conv1D(4, 3) -> (4 channels, length 4)
    conv = keras.layers.Conv1D(4, 3, data_format="channels_first", use_bias=False, name="conv")
    model = keras.Model(inputs, bnkeras.BatchNormalization(axis=1)(conv(inputs)))
    randomize(model, rng)
    result = fold_batchnorm(model)
    (entry,) = result.report.entries
    if keras_misplaces_channels_first_bias():
        assert entry.action == "affine" and "bias would be misplaced" in entry.reason
    else:
        assert entry.action == "folded"
    assert_same_outputs(model, result.model, harness.random_batch(rng, (2, 3, 6)))


def test_bn_outside_any_functional_graph_is_reported_and_kept(rng):
    class Block(keras.layers.Layer):  # a custom layer holding a conv and a BN
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(3, 1)
            self.norm = keras.layers.BatchNormalization(name="inner_bn")

        def call(self, x, training=None):
            return self.norm(self.conv(x), training=training)

    inputs = keras.Input((5, 5, 3))
    x = Block(name="block")(inputs)
    model = keras.Model(
        inputs, keras.layers.BatchNormalization(name="outer_bn")(keras.layers.Conv2D(3, 1)(x))
    )
    randomize(model, rng)
    result = fold_batchnorm(model)
    by_name = {e.bn: e for e in result.report.entries}
    assert by_name["outer_bn"].action == "folded"
    assert by_name["inner_bn"].action == "kept" and "inside block" in by_name["inner_bn"].reason
    assert result.report.bn_before == 2 and result.report.bn_after == 1
    assert_same_outputs(model, result.model, harness.random_batch(rng, (2, 5, 5, 3)))


def test_forward_fold_into_channels_first_conv_with_colliding_width_is_refused(rng):
    """ReLU -> BN(axis=1) -> Conv2D(16, 1, channels_first) on 8x16x16: the conv's output
    has 16 channels and a last axis of 16, where a folded bias would be misplaced."""
    from bnkeras.export.fold import keras_misplaces_channels_first_bias

    model = _chain(
        keras.layers.ReLU(),
        keras.layers.BatchNormalization(axis=1, name="bn"),
        keras.layers.Conv2D(16, 1, data_format="channels_first", name="next"),
        shape=(8, 16, 16),
    )
    randomize(model, rng)
    result = fold_batchnorm(model)
    (entry,) = result.report.entries
    if keras_misplaces_channels_first_bias():
        assert entry.action == "affine" and "bias would be misplaced" in entry.reason
    assert_same_outputs(model, result.model, harness.random_batch(rng, (2, 8, 16, 16)))


@pytest.mark.parametrize("use_bias", [True, False])
def test_channels_first_fold_with_dynamic_width_holds_for_every_width(use_bias, rng):
    """With Input((8, None, None)) the width is known only at run time; the fold must be
    right for a width equal to the channel count (16) as well as for any other."""
    inputs = keras.Input((8, None, None))
    conv = keras.layers.Conv2D(
        16, 3, padding="same", data_format="channels_first", use_bias=use_bias, name="conv"
    )
    model = keras.Model(inputs, keras.layers.BatchNormalization(axis=1, name="bn")(conv(inputs)))
    randomize(model, rng)
    result = fold_batchnorm(model)
    for height, width in [(16, 16), (12, 16), (16, 12), (9, 7)]:
        x = harness.random_batch(rng, (2, 8, height, width))
        assert_same_outputs(model, result.model, x)


def test_forward_fold_into_channels_first_conv_with_dynamic_width(rng):
    model = _chain(
        keras.layers.ReLU(),
        keras.layers.BatchNormalization(axis=1, name="bn"),
        keras.layers.Conv2D(16, 1, data_format="channels_first", name="next"),
        shape=(8, None, None),
    )
    randomize(model, rng)
    result = fold_batchnorm(model)
    for width in (16, 5):
        assert_same_outputs(model, result.model, harness.random_batch(rng, (2, 8, 6, width)))


def test_nested_sequential_and_nested_subclassed_model(rng):
    """The Sequential part folds; the subclassed part stays as it is, reported."""

    class Sub(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(4, 1)
            self.norm = keras.layers.BatchNormalization(name="sub_bn")

        def call(self, x, training=None):
            return self.norm(self.conv(x), training=training)

    seq = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(4, 3, padding="same", name="seq_conv"),
            keras.layers.BatchNormalization(name="seq_bn"),
        ],
        name="seq",
    )
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, Sub(name="sub")(seq(inputs)))
    randomize(model, rng)
    harness.randomize_statistics(model.get_layer("sub").norm, rng)
    result = fold_batchnorm(model)
    by_name = {e.bn: e for e in result.report.entries}
    assert by_name["seq_bn"].action == "folded" and by_name["seq_bn"].into == "seq_conv"
    assert by_name["sub_bn"].action == "kept"
    assert "inside sub, a subclassed model" in by_name["sub_bn"].reason
    assert "(1 folded, 0 kept as affine, 1 left as BN)" in str(result.report)
    assert result.report.bn_after == 1
    assert_same_outputs(model, result.model, harness.random_batch(rng, (2, 6, 6, 3)))


def test_channel_affine_keeps_float64(rng):
    model = _chain(
        keras.layers.Conv2D(4, 3, dtype="float64"),
        keras.layers.ReLU(dtype="float64"),
        keras.layers.BatchNormalization(dtype="float64", name="bn"),
        keras.layers.GlobalAveragePooling2D(dtype="float64"),
    )
    randomize(model, rng)
    result = fold_batchnorm(model)
    assert result.report.entries[0].action == bnkeras.export.fold.FoldAction.AFFINE
    affine = result.model.get_layer("bn")
    assert all(w.dtype == "float64" for w in affine.weights)
    x = rng.normal(size=(3, 6, 6, 3))
    diff = np.abs(np.asarray(result.model(x)) - np.asarray(model(x, training=False)))
    assert diff.max() < 1e-12


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_forward_fold_into_conv_with_and_without_bias(data_format, use_bias, rng):
    axis, shape = (1, (3, 7, 6)) if data_format == "channels_first" else (-1, (7, 6, 3))
    model = _chain(
        keras.layers.ReLU(),
        keras.layers.BatchNormalization(axis=axis, name="bn"),
        keras.layers.Conv2D(5, 3, data_format=data_format, use_bias=use_bias, name="next"),
        shape=shape,
    )
    randomize(model, rng)
    result = fold_batchnorm(model)
    (entry,) = result.report.entries
    assert (entry.action, entry.into) == ("folded_forward", "next")
    assert "valid padding" in entry.reason and result.model.get_layer("next").use_bias
    assert_same_outputs(model, result.model, harness.random_batch(rng, (2, *shape)))


def test_forward_and_backward_folds_into_one_conv(rng):
    """ReLU -> BN1 -> Conv1D(valid) -> BN2: BN1 folds forward and BN2 backward into it."""
    model = _chain(
        keras.layers.ReLU(),
        keras.layers.BatchNormalization(name="bn1"),
        keras.layers.Conv1D(4, 3, use_bias=False, name="conv"),
        bnkeras.BatchNormalization(name="bn2"),
        shape=(9, 3),
    )
    randomize(model, rng)
    result = fold_batchnorm(model)
    assert {(e.bn, e.action, e.into) for e in result.report.entries} == {
        ("bn1", "folded_forward", "conv"),
        ("bn2", "folded", "conv"),
    }
    assert count_bn(result.model) == 0 and len(result.model.layers) == 3
    assert_same_outputs(model, result.model, harness.random_batch(rng, (3, 9, 3)))


def test_forward_fold_into_depthwise_with_multiplier_and_dynamic_size(rng):
    model = _chain(
        keras.layers.ReLU(),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=3, name="next"),
        shape=(None, None, 4),
    )
    randomize(model, rng)
    result = fold_batchnorm(model)
    assert result.report.entries[0].action == "folded_forward"
    for size in ((5, 5), (8, 11)):
        assert_same_outputs(model, result.model, harness.random_batch(rng, (2, *size, 4)))
