"""One side of tests/layers/test_cross_backend.py, in the process's Keras backend.

`python -m tests.layers.cross_backend_side save|load FOLDER` (or `side(...)` in the
test's own process): `save` builds a model with the three layers (renorm with a
schedule, bias correction and ghost batches; ghost BN with a remainder batch),
takes one training step and saves it to FOLDER/model.keras; `load` loads that
file. Both then record the weights, the inference outputs and, after one more
training step on the same batch, every weight and the outputs, to
FOLDER/{mode}.npz and FOLDER/{mode}.json.
"""

import json
import sys

import keras
import numpy as np

import bnkeras


def build_model():
    inputs = keras.Input((4, 4, 3))
    h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    h = bnkeras.BatchNormalization(name="bn")(h)
    h = bnkeras.BatchRenormalization(
        rmax=bnkeras.LinearRamp(1.0, 3.0, 0, 2),
        dmax=2.0,
        renorm_momentum=0.9,
        renorm_bias_correction=True,
        virtual_batch_size=4,
        name="renorm",
    )(h)
    h = keras.layers.Permute((3, 1, 2))(h)
    h = bnkeras.GhostBatchNormalization(virtual_batch_size=3, axis=1, name="ghost")(h)
    h = keras.layers.GlobalAveragePooling2D(data_format="channels_first")(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    rng = np.random.default_rng(0)
    for weight in model.weights:
        if "float" in weight.dtype:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(weight.dtype))
    compile_model(model)
    return model


def compile_model(model):
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")


def side(mode, folder):
    data = np.load(f"{folder}/data.npz")
    x, y = data["x"], data["y"]
    info = {"backend": keras.backend.backend()}
    if mode == "save":
        model = build_model()
        model.train_on_batch(x, y)  # the step and statistics move off their initial values
        # Keras's own serialization imports TensorFlow wherever it is installed;
        # building and training must not.
        info["tensorflow_imported"] = "tensorflow" in sys.modules
        model.save(f"{folder}/model.keras")
    else:
        # Compiled here as on the save side (SGD has no state): a file saved under
        # torch names Keras's torch SGD class (keras.src.backend.torch.optimizers), and
        # Keras 3.15 then runs that class under TensorFlow, which fails.
        model = keras.saving.load_model(f"{folder}/model.keras", compile=False)
        compile_model(model)
    info["paths"] = [w.path for w in model.weights]
    arrays = {f"saved/{i}": np.asarray(w) for i, w in enumerate(model.weights)}
    # (keras.ops.convert_to_numpy: on torch the output requires grad)
    arrays["inference"] = keras.ops.convert_to_numpy(model(x, training=False))
    model.train_on_batch(x, y)
    arrays.update({f"trained/{i}": np.asarray(w) for i, w in enumerate(model.weights)})
    arrays["after"] = keras.ops.convert_to_numpy(model.predict(x, verbose=0))
    np.savez(f"{folder}/{mode}.npz", **arrays)
    with open(f"{folder}/{mode}.json", "w") as f:
        json.dump(info, f)


if __name__ == "__main__":
    side(sys.argv[1], sys.argv[2])
