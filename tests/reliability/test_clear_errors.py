"""Clear errors instead of library messages: a legacy HDF5 model file, arrays given to
`recalibrate_batchnorm` instead of batches, a multi-input model fed (x1, x2) tuples,
`export_model` given None or a model in memory."""

import keras
import numpy as np
import pytest

import bnkeras
from bnkeras.export import export_model
from tests.reliability.conftest import assert_clean_error, cli, tree_hashes


@pytest.fixture
def legacy_h5(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)])
    model.add(keras.layers.BatchNormalization())
    path = tmp_path / "legacy.h5"
    model.save(path)  # Keras 3 still writes the legacy format (and logs that it is legacy)
    assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    return path


@pytest.mark.parametrize("name", ["legacy.h5", "legacy.hdf5", "renamed.keras"])
def test_export_of_a_legacy_hdf5_model_says_so_and_how_to_convert(
    legacy_h5, tmp_path, capsys, name
):
    path = legacy_h5.rename(tmp_path / name)
    before = tree_hashes(tmp_path)
    code, out, err = cli(capsys, "export", path, "--out", tmp_path / "out")
    assert_clean_error(code, err, str(path), "legacy HDF5 format", "keras.saving.load_model(")
    assert "is not a Keras model file" not in err
    assert tree_hashes(tmp_path) == before


def test_evaluate_of_a_legacy_hdf5_model_says_so(legacy_h5, capsys):
    code, out, err = cli(capsys, "evaluate", legacy_h5, "--dataset", "bnkeras_shapes")
    assert_clean_error(code, err, str(legacy_h5), "legacy HDF5 format")


def test_the_conversion_the_message_gives_works(legacy_h5, capsys):
    code, out, err = cli(capsys, "export", legacy_h5, "--out", legacy_h5.parent / "out")
    command = err.split("in Python: ", 1)[1].split(" (pass", 1)[0]
    assert command.startswith("keras.saving.load_model(")
    eval(command, {"keras": keras})  # noqa: S307 - the message's own command
    converted = legacy_h5.with_suffix(".keras")
    assert len(keras.saving.load_model(converted).layers) == 2


# ------------------------------------------------------------ recalibrate_batchnorm


def _model(inputs=1):
    layers = [keras.Input((4,), name=f"x{i}") for i in range(inputs)]
    x = layers[0] if inputs == 1 else keras.layers.Concatenate()(layers)
    x = keras.layers.Dense(3)(x)
    return keras.Model(layers, keras.layers.BatchNormalization()(x))


def _variables(model):
    return [v.numpy().copy() for v in model.variables]


MARKER = 1234.5678  # a value no message may print


@pytest.mark.parametrize(
    "dataset",
    [
        lambda x: x,  # the whole array
        lambda x: (x, np.zeros(len(x))),  # (inputs, targets) arrays
        lambda x: keras.ops.convert_to_tensor(x),
        lambda x: 3,
        lambda x: {"x0": x},
    ],
    ids=["array", "tuple-of-arrays", "tensor", "int", "dict-of-arrays"],
)
def test_recalibrate_refuses_an_array_in_one_short_line(dataset):
    model = _model()
    x = np.full((256, 4), MARKER, "float32")
    before = _variables(model)
    with pytest.raises(bnkeras.Error, match=r"must be an iterable of batches.*Received: dataset="):
        bnkeras.recalibrate_batchnorm(model, dataset(x), 4)
    message = str(
        pytest.raises(bnkeras.Error, bnkeras.recalibrate_batchnorm, model, dataset(x), 4).value
    )
    assert "1234" not in message and len(message) < 400 and "\n" not in message, message
    for a, b in zip(before, _variables(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_recalibrate_refuses_batches_of_the_wrong_shape_without_printing_them():
    model = _model()
    before = _variables(model)
    batches = [np.full((8, 5), MARKER, "float32")] * 3
    with pytest.raises(bnkeras.Error, match=r"does not fit the model's input") as info:
        bnkeras.recalibrate_batchnorm(model, batches, 3)
    assert "1234" not in str(info.value) and "(8, 5)" in str(info.value)
    for a, b in zip(before, _variables(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_recalibrate_says_a_tuple_batch_is_inputs_then_targets_for_a_two_input_model():
    model = _model(inputs=2)
    x1, x2 = np.full((8, 4), MARKER, "float32"), np.ones((8, 4), "float32")
    with pytest.raises(
        bnkeras.Error, match=r"2 input\(s\) but each batch gives 1.*\(inputs, targets"
    ) as info:
        bnkeras.recalibrate_batchnorm(model, [(x1, x2)] * 2, 2)
    assert "1234" not in str(info.value)
    # The forms the message names work.
    assert bnkeras.recalibrate_batchnorm(model, [((x1, x2),)] * 2, 2) == 2
    assert bnkeras.recalibrate_batchnorm(model, [((x1, x2), np.zeros(8))] * 2, 2) == 2
    assert bnkeras.recalibrate_batchnorm(model, [[x1, x2]] * 2, 2) == 2


def test_recalibrate_says_a_list_batch_is_the_inputs():
    x = np.full((8, 4), MARKER, "float32")
    with pytest.raises(bnkeras.Error, match=r"1 input\(s\) but each batch gives 2.*as a tuple"):
        bnkeras.recalibrate_batchnorm(_model(), [[x, np.zeros(8)]], 1)


def test_recalibrate_still_takes_a_list_of_batches_and_a_dataset():
    import tensorflow as tf

    model = _model()
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    assert bnkeras.recalibrate_batchnorm(model, [x[:32], x[32:]], 2) == 2
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(64))).batch(16)
    assert bnkeras.recalibrate_batchnorm(model, dataset, 3) == 3


# ------------------------------------------------------------------- export_model


@pytest.mark.parametrize(
    "source, out_dir, name",
    [
        ("model.keras", None, "out_dir"),
        ("model.keras", 3, "out_dir"),
        (None, "out", "source"),
        ("MODEL", "out", "source"),
    ],
)
def test_export_model_names_a_wrong_argument(tmp_path, monkeypatch, source, out_dir, name):
    monkeypatch.chdir(tmp_path)
    model = _model()
    source = model if source == "MODEL" else source
    with pytest.raises(bnkeras.Error, match=rf"Argument `{name}` of export_model must be a path"):
        export_model(source, out_dir)
    assert list(tmp_path.iterdir()) == []


def test_export_model_of_a_model_in_memory_says_to_save_it_first(tmp_path):
    with pytest.raises(
        bnkeras.Error, match=r"model.save\('model.keras'\).*Received: source=Functional"
    ):
        export_model(_model(), tmp_path / "out")


# ------------------------------------------------------------------- evaluate


def test_evaluate_refuses_an_image_size_the_run_model_does_not_take(finished_run, capsys):
    """The run's model takes 16x16 images: --image-size 24 was a Keras shape error."""
    code, out, err = cli(capsys, "evaluate", finished_run, "--image-size", "24")
    assert_clean_error(code, err, "--image-size 24", "16x16", "Received: image_size=24")


@pytest.mark.parametrize(
    "inputs, message",
    [
        (keras.Input((4,)), "not an image classifier"),
        (keras.Input((8, 8, 1)), "not an image classifier"),
        (keras.Input((8, 12, 3)), "takes images of 8x12: evaluate feeds square images"),
    ],
    ids=["vector", "one-channel", "not-square"],
)
def test_evaluate_refuses_a_model_file_that_takes_no_square_rgb_images(
    tmp_path, capsys, inputs, message
):
    x = keras.layers.Flatten()(inputs) if len(inputs.shape) > 2 else inputs
    path = tmp_path / "m.keras"
    keras.Model(inputs, keras.layers.Dense(10)(x)).save(path)
    code, out, err = cli(capsys, "evaluate", path, "--dataset", "bnkeras_shapes")
    assert_clean_error(code, err, str(path), message)
