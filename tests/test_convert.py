"""`bnkeras.convert_batchnorm` and `bnkeras.freeze_batchnorm`."""

import gc
import warnings

import keras
import numpy as np
import pytest

import bnkeras
from bnkeras import convert as convert_module
from bnkeras.convert import ConvertError
from tests import harness
from tests.export.test_zoo import ZOO

NORM_CLASSES = {
    "bn": bnkeras.BatchNormalization,
    "renorm": bnkeras.BatchRenormalization,
    "ghost": bnkeras.GhostBatchNormalization,
    "keras": keras.layers.BatchNormalization,
}


def _all_layers(model):
    """Every layer of `model`, nested models walked through `.layers` (each once)."""
    found, stack = {}, list(model.layers)
    while stack:
        layer = stack.pop()
        if id(layer) not in found:
            found[id(layer)] = layer
            stack.extend(getattr(layer, "layers", []))
    return list(found.values())


def _bn_count(model, classes):
    return sum(type(layer) in classes for layer in _all_layers(model))


def _randomize(model, rng):
    """Random gamma, beta and moving statistics in every BN layer (defaults hide bugs)."""
    for layer in _all_layers(model):
        if hasattr(layer, "moving_variance"):
            harness.randomize_statistics(layer, rng)


def assert_same_inference(model, converted, x, atol=2e-5):
    for e, g in zip(
        keras.tree.flatten(model(x, training=False)),
        keras.tree.flatten(converted(x, training=False)),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), atol=atol, rtol=1e-4)


def _small_model(axis=-1, kind=keras.layers.BatchNormalization, **bn):
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    x = kind(axis=axis, **bn)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("norm", list(NORM_CLASSES))
def test_every_norm_equal_in_inference_and_trainable(norm, rng):
    model = _small_model(center=True, scale=True, epsilon=1e-2)
    _randomize(model, rng)
    options = {"virtual_batch_size": 2} if norm == "ghost" else {}
    converted = convert_batchnorm(model, norm, **options)
    layer = next(layer for layer in converted.layers if "batch_normalization" in layer.name)
    assert type(layer) is NORM_CLASSES[norm]
    assert layer.epsilon == pytest.approx(1e-2) and layer.name == model.layers[2].name
    x = rng.normal(size=(4, 6, 6, 3)).astype("float32")
    assert_same_inference(model, converted, x)
    converted.compile(optimizer="sgd", loss="mse")
    converted.fit(x, rng.normal(size=(4, 3)), verbose=0, epochs=1)  # trains


def test_a_weight_not_carried_fails_the_check(rng, monkeypatch):
    """The equality check can fail: a conversion that drops moving_variance is caught."""
    model = _small_model()
    _randomize(model, rng)
    carry = convert_module._carry

    def broken(source, target):
        carry(source, target)
        target.moving_variance.assign(np.ones(target.moving_variance.shape, "float32"))

    monkeypatch.setattr(convert_module, "_carry", broken)
    converted = convert_batchnorm(model, "bn")
    with pytest.raises(AssertionError):
        assert_same_inference(model, converted, rng.normal(size=(2, 6, 6, 3)).astype("float32"))


def test_renorm_statistics_start_from_the_moving_ones_or_are_carried(rng):
    model = _small_model(epsilon=1e-3)
    _randomize(model, rng)
    bn = model.layers[2]
    renorm = convert_batchnorm(model, "renorm", total_steps=100).layers[2]
    np.testing.assert_allclose(renorm.renorm_mean, bn.moving_mean)
    np.testing.assert_allclose(
        renorm.renorm_stddev, np.sqrt(np.asarray(bn.moving_variance) + 1e-3), rtol=1e-6
    )
    assert int(renorm.renorm_step) == 0 and renorm.total_steps == 100
    # renorm -> keras renorm -> renorm: the renorm statistics travel.
    renorm.renorm_mean.assign(rng.normal(size=4).astype("float32"))
    renorm.renorm_step.assign(7)
    back = convert_batchnorm(convert_batchnorm(model, "renorm"), "keras", renorm=True)
    keras_layer = back.layers[2]
    assert keras_layer.renorm
    again = convert_batchnorm(back, "renorm").layers[2]
    np.testing.assert_allclose(again.renorm_mean, keras_layer.renorm_mean)
    np.testing.assert_allclose(again.renorm_stddev, keras_layer.renorm_stddev)


def test_sequential_nested_shared_and_channels_first(rng):
    shared = keras.layers.BatchNormalization(axis=1, name="shared_bn")
    inner = keras.Sequential(
        [keras.Input((4, 5)), keras.layers.Dense(5), keras.layers.BatchNormalization()],
        name="inner",
    )
    inputs = keras.Input((4, 5))
    a = shared(inner(inputs))
    b = shared(keras.layers.Dense(5)(inputs))  # the same BN layer called twice
    model = keras.Model(inputs, keras.layers.Add()([a, b]))
    _randomize(model, rng)
    converted = convert_batchnorm(model, "bn")
    assert _bn_count(model, (keras.layers.BatchNormalization,)) == 2
    assert _bn_count(converted, (bnkeras.BatchNormalization,)) == 2
    assert _bn_count(converted, (keras.layers.BatchNormalization,)) == 0
    new_shared = converted.get_layer("shared_bn")
    assert new_shared.axis == 1 and len(new_shared._inbound_nodes) == 2  # still shared
    assert_same_inference(model, converted, rng.normal(size=(3, 4, 5)).astype("float32"))
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    _randomize(sequential, rng)
    converted = convert_batchnorm(sequential, "ghost", virtual_batch_size=2)
    assert isinstance(converted, keras.Sequential)
    assert_same_inference(sequential, converted, rng.normal(size=(4, 4)).astype("float32"))


def test_the_input_model_is_untouched_and_shares_nothing(rng):
    model = _small_model()
    _randomize(model, rng)
    before = [np.array(w) for w in model.weights]
    converted = convert_batchnorm(model, "bn")
    converted.layers[1].kernel.assign(np.zeros(converted.layers[1].kernel.shape, "float32"))
    for old, new in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(old, np.asarray(new))
    assert not {id(v) for v in model.weights} & {id(v) for v in converted.weights}
    assert type(model.layers[2]) is keras.layers.BatchNormalization


def test_back_to_keras_loads_without_bnkeras_classes(rng, tmp_path):
    model = _small_model(kind=bnkeras.BatchRenormalization, total_steps=10)
    _randomize(model, rng)
    plain = convert_batchnorm(model, "keras")
    path = tmp_path / "plain.keras"
    plain.save(path)
    assert b"bnkeras" not in _zip_config(path)
    assert_same_inference(model, plain, rng.normal(size=(2, 6, 6, 3)).astype("float32"))


def _zip_config(path):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read("config.json")


class _Block(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3)
        self.bn = keras.layers.BatchNormalization()

    def call(self, x, training=None):
        return self.bn(self.dense(x), training=training)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.bn = keras.layers.BatchNormalization()

    def call(self, x):
        return self.bn(x)


def test_bn_inside_a_subclassed_layer_is_kept_and_named(rng):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, _Block(name="block")(inputs))
    model.get_layer("block").set_weights(model.get_layer("block").get_weights())
    with pytest.warns(UserWarning, match=r"1 BN layer\(s\) inside subclassed layers .*block/"):
        converted = convert_batchnorm(model, "bn")
    x = rng.normal(size=(2, 4)).astype("float32")
    assert_same_inference(model, converted, x)


def test_bad_input_is_a_clear_error(rng):
    model = _small_model()
    with pytest.raises(ConvertError, match=r"Received: norm='batchnorm'"):
        convert_batchnorm(model, "batchnorm")
    with pytest.raises(ConvertError, match=r"not an argument of BatchNormalization.*rmax"):
        convert_batchnorm(model, "bn", rmax=2.0)
    subclassed = _Subclassed()
    subclassed(np.zeros((1, 3), "float32"))
    with pytest.raises(ConvertError, match="a subclassed model"):
        convert_batchnorm(subclassed, "bn")
    with pytest.raises(ConvertError, match="not a Keras model"):
        convert_batchnorm("model.keras", "bn")


@pytest.mark.parametrize("kind", [keras.layers.BatchNormalization, bnkeras.BatchNormalization])
def test_freeze_batchnorm_keeps_statistics_while_the_rest_trains(kind, rng):
    model = _small_model(kind=kind)
    _randomize(model, rng)
    assert bnkeras.freeze_batchnorm(model) is model
    bn = model.layers[2]
    before = {w.path: np.array(w) for w in bn.weights}
    kernel = np.array(model.layers[1].kernel)
    x = rng.normal(size=(8, 6, 6, 3)).astype("float32")
    # In a training call the frozen BN normalizes with its moving statistics.
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), atol=1e-6)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, rng.normal(size=(8, 3)), epochs=2, verbose=0)
    for w in bn.weights:
        np.testing.assert_array_equal(np.array(w), before[w.path])
    assert not np.allclose(np.array(model.layers[1].kernel), kernel)  # the rest trained
    bn.trainable = True  # unfreezing is Keras's own switch
    assert bn.trainable and len(bn.trainable_weights) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name,build,size", ZOO, ids=[z[0] for z in ZOO])
def test_every_keras_application_family_converts_exactly(name, build, size):
    """Each family (reduced sizes, random BN statistics) converted to bnkeras BN: the
    count of replaced layers against an independent count, equal in inference; and
    back to Keras BN, equal again."""
    keras.backend.clear_session()
    gc.collect()
    rng = np.random.default_rng(0)
    model = build(input_shape=(size, size, 3), weights=None, classes=10)
    _randomize(model, rng)
    count = _bn_count(model, (keras.layers.BatchNormalization,))
    x = rng.uniform(0, 255, size=(2, size, size, 3)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing kept: every BN is reachable
        converted = convert_batchnorm(model, "bn")
    assert _bn_count(converted, (bnkeras.BatchNormalization,)) == count
    assert _bn_count(converted, (keras.layers.BatchNormalization,)) == 0
    assert_same_inference(model, converted, x, atol=1e-4)
    back = convert_batchnorm(converted, "keras")
    assert _bn_count(back, (keras.layers.BatchNormalization,)) == count
    assert_same_inference(model, back, x, atol=1e-4)
    diff = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(
            keras.tree.flatten(model(x, training=False)),
            keras.tree.flatten(converted(x, training=False)),
            strict=True,
        )
    )
    print(f"| {name} | {count} | {count} | {diff:.1e} |")  # the table of the docs (-s)


convert_batchnorm = bnkeras.convert_batchnorm
