"""The user's own model in `bnkeras train`: a `.keras` file or a keras.applications network,
its norms converted, its head replaced, trained, resumed, evaluated and exported."""

import json

import keras
import numpy as np
import pytest

import bnkeras
from bnkeras.training.config import build_config
from bnkeras.training.models.external import ModelSourceError, build_external
from bnkeras.training.trainer import train_and_evaluate
from tests.reliability.conftest import assert_clean_error, cli
from tests.training.conftest import TINY

# The tiny run without our model: the model comes from the test.
SMALL = [s for s in TINY if not s.startswith(("model.", "train.epochs"))]


def _user_model(classes=5, activation="softmax"):
    """A user's classifier: conv, Keras BN, pooling, a softmax Dense head of 5 classes."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(epsilon=1e-3)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation=activation, name="classifier")(x)
    return keras.Model(inputs, outputs, name="users_model")


def _config(shapes_dir, *overrides, **flat):
    return build_config("demo", [*SMALL, *overrides], {"data.data_dir": shapes_dir, **flat})


def test_head_rule_and_conversion_keep_the_features():
    model = _user_model()
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    # Same classes, softmax head: the same Dense weights, without the activation.
    same, head = build_external_model(model, 5, norm=("bn", {}))
    assert head == ["classifier_logits"]
    logits = same(x, training=False)
    np.testing.assert_allclose(
        keras.ops.softmax(logits), model(x, training=False), atol=1e-6, rtol=1e-5
    )
    assert sum(isinstance(layer, bnkeras.BatchNormalization) for layer in same.layers) == 1
    # Other classes: a new head on the same features.
    other, head = build_external_model(model, 10, norm=("renorm", {"total_steps": 10}))
    assert head == ["classifier_10"] and other.output.shape == (None, 10)
    assert any(isinstance(layer, bnkeras.BatchRenormalization) for layer in other.layers)


@pytest.mark.parametrize(
    "name, options", [("MobileNet", {"alpha": 0.25}), ("MobileNetV3Small", {"alpha": 0.75})]
)
def test_a_1x1_convolution_head_is_the_head(name, options, tmp_path):
    """MobileNet V1 and V3 classify with a 1x1 Conv2D over pooled features, then a
    reshape: before, `--model keras.applications.MobileNet` was "no classification head",
    and `--set model.head=conv_preds` was refused for the Reshape after it."""
    build = {"name": f"keras.applications.{name}", **options}
    model, head = build_external(build, ("bn", {}), 10, (32, 32, 3))
    assert model.output.shape == (None, 10) and len(head) == 2  # the conv and its flatten
    conv = model.get_layer(head[0])
    assert isinstance(conv, keras.layers.Conv2D) and conv.activation is keras.activations.linear
    assert conv.trainable_weights  # the lr multiplier's head
    assert head[0].endswith("_logits")  # its weights, without the activation
    # A file of the network with other classes: a new 1x1 convolution on its features.
    path = tmp_path / "m.keras"
    getattr(keras.applications, name)(input_shape=(32, 32, 3), weights=None, **options).save(path)
    other, head = build_external({"file": str(path)}, ("bn", {}), 7, (32, 32, 3))
    assert other.output.shape == (None, 7) and head[0].endswith("_7")


def build_external_model(model, classes, norm, tmp=None):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/m.keras"
        model.save(path)
        return build_external({"file": path, "name": "resnet20"}, norm, classes, (16, 16, 3))


def test_model_file_trains_resumes_evaluates_and_exports(shapes_dir, tmp_path, capsys):
    model_file = tmp_path / "users_model.keras"
    _user_model().save(model_file)
    workdir = tmp_path / "run"
    args = ["train", "--workdir", workdir, "--data-dir", shapes_dir, "--model-file", model_file]
    args += ["--norm", "bn", *(f"--set={s}" for s in SMALL)]
    code, out, err = cli(capsys, *args, "--epochs", "1")
    assert code == 0, err
    code, out, err = cli(capsys, *args, "--epochs", "2")  # resumed
    assert code == 0 and "resuming from epoch 1" in out, err
    trained = keras.saving.load_model(workdir / "model.keras", compile=False)
    assert trained.output.shape == (None, 10)  # the embedded dataset's 10 classes
    assert sum(isinstance(la, bnkeras.BatchNormalization) for la in trained.layers) == 1
    code, out, err = cli(capsys, "evaluate", workdir)
    assert code == 0 and "top-1" in out, err
    code, out, err = cli(
        capsys, "export", workdir, "--out", tmp_path / "export", "--formats", "keras"
    )
    assert code == 0, err
    report = json.loads((tmp_path / "export" / "report.json").read_text())
    assert report["verification"]["passed"] and report["fold"]["folded"]


@pytest.mark.slow
def test_keras_application_trains_resumes_and_exports(shapes_dir, tmp_path, capsys):
    workdir = tmp_path / "run"
    args = ["train", "--workdir", workdir, "--data-dir", shapes_dir]
    args += ["--model", "keras.applications.MobileNet", "--norm", "bn"]
    args += [*(f"--set={s}" for s in SMALL), "--set=data.image_size=32", "--set=model.alpha=0.25"]
    code, out, err = cli(capsys, *args, "--epochs", "1")
    assert code == 0, err
    code, out, err = cli(capsys, *args, "--epochs", "2")
    assert code == 0 and "resuming from epoch 1" in out, err
    # The run's export: fold and verification (every format has its own tests).
    export = ["export", workdir, "--out", tmp_path / "export", "--formats", "keras"]
    code, out, err = cli(capsys, *export)
    assert code == 0, err
    report = json.loads((tmp_path / "export" / "report.json").read_text())
    assert report["verification"]["passed"]
    trained = keras.saving.load_model(workdir / "model.keras", compile=False)
    bns = sum(isinstance(la, bnkeras.BatchNormalization) for la in trained.layers)
    assert bns > 0 and not any(
        isinstance(la, keras.layers.BatchNormalization) for la in trained.layers
    )
    # every converted BN of MobileNet follows a conv: all fold, none is left
    assert report["fold"]["bn_before"] == report["fold"]["folded"] == bns
    assert report["fold"]["bn_after"] == 0


def test_freeze_keeps_the_bn_statistics(shapes_dir, tmp_path):
    model_file = tmp_path / "m.keras"
    _user_model(classes=10, activation=None).save(model_file)
    before = keras.saving.load_model(model_file).layers[2].get_weights()
    config = _config(shapes_dir, "norm.freeze=true", "train.epochs=1", f"model.file={model_file}")
    train_and_evaluate(config, tmp_path / "run", progress=0)
    trained = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    bn = next(la for la in trained.layers if isinstance(la, bnkeras.BatchNormalization))
    for old, new in zip(before, bn.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    assert not np.array_equal(
        trained.layers[1].get_weights()[0],
        keras.saving.load_model(model_file).layers[1].get_weights()[0],
    )


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_backbone_learning_rate_multiplier(shapes_dir, optimizer, weight_decay):
    """One step: the backbone moves by the multiplier times what the head's rate moves it,
    its decoupled weight decay included (lr x weight_decay, as a PyTorch parameter
    group's lr; before, the decay stayed at the head's rate)."""
    from bnkeras.training.trainer import compile_model

    x = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 10, 10)
    deltas = {}
    for multiplier in (1.0, 0.25):
        keras.utils.set_random_seed(0)
        model = _user_model(classes=10, activation=None)
        start = [np.array(w) for w in model.trainable_weights]
        config = _config(
            shapes_dir,
            f"train.optimizer={optimizer}",
            "train.momentum=0",
            f"train.weight_decay={weight_decay}",
            f"train.backbone_lr_multiplier={multiplier}",
            "train.schedule=constant",
        )
        compile_model(model, config, 1, 10, head=["classifier"])
        model.train_on_batch(x, y)
        deltas[multiplier] = [
            np.array(w) - s for w, s in zip(model.trainable_weights, start, strict=True)
        ]
    names = [w.path for w in model.trainable_weights]
    for name, full, low in zip(names, deltas[1.0], deltas[0.25], strict=True):
        expected = 1.0 if name.startswith("classifier") else 0.25
        # Each weight's step (a sum of |step| would hide a decay of random sign).
        scale = np.abs(full).max()
        np.testing.assert_allclose(low, expected * full, rtol=1e-3, atol=1e-4 * scale, err_msg=name)


def test_errors_name_the_input_and_the_fix(shapes_dir, tmp_path, capsys):
    base = ["train", "--workdir", tmp_path / "run", "--data-dir", shapes_dir]
    base += [f"--set={s}" for s in SMALL]
    code, _, err = cli(capsys, *base, "--model", "keras.applications.ResNet5")
    assert_clean_error(code, err, "keras.applications.ResNet5", "keras.applications.ResNet50")
    two = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(two)
    multi = keras.Model(two, [keras.layers.Dense(10)(pooled), keras.layers.Dense(2)(pooled)])
    multi.save(tmp_path / "multi.keras")
    code, _, err = cli(capsys, *base, "--model-file", tmp_path / "multi.keras")
    assert_clean_error(code, err, "2 output(s)", "one output")
    flat = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D()])
    flat.save(tmp_path / "nohead.keras")
    code, _, err = cli(capsys, *base, "--model-file", tmp_path / "nohead.keras")
    assert_clean_error(code, err, "no classification head", "model.head")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    other.save_weights(tmp_path / "other.weights.h5")
    code, _, err = cli(
        capsys,
        *base,
        "--model",
        "keras.applications.MobileNetV2",
        "--weights",
        tmp_path / "other.weights.h5",
        "--set=data.image_size=32",
    )
    assert_clean_error(code, err, "other.weights.h5", "does not match")
    code, _, err = cli(capsys, *base, "--model-file", tmp_path / "nohead.keras", "--norm", "none")
    assert_clean_error(code, err, "norm")
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_no_download_is_attempted(monkeypatch):
    """keras.applications are built with weights=None: a download would fail here."""

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(keras.utils, "get_file", refuse)
    model, head = build_external(
        {"name": "keras.applications.MobileNetV2", "alpha": 0.35}, None, 3, (32, 32, 3)
    )
    assert model.output.shape == (None, 3) and head == []


def test_unknown_application_lists_close_names():
    with pytest.raises(ModelSourceError, match=r"keras\.applications\.MobileNetV2"):
        build_external({"name": "keras.applications.MobilenetV2"}, None, 3, (32, 32, 3))
