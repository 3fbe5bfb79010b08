"""The names of models, norms and strategies, importable without TensorFlow.

The model and norm factories accept these names, and `bnkeras train --help` lists
them as choices without importing the model code.
"""

from bnkeras.norms import NORMS  # noqa: F401 - one list of norm names

CIFAR_DEPTHS = (8, 14, 20, 32, 44, 56, 110)
MODELS = (
    *(f"resnet{depth}" for depth in CIFAR_DEPTHS),
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
)
APPLICATIONS = "keras.applications."  # model.name prefix of a keras.applications network
STRATEGIES = ("default", "mirrored", "multiworker")
MIXED_PRECISION = ("float16", "bfloat16")
JIT_COMPILE = {"auto": "auto", "true": True, "false": False}
