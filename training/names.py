"""The names the command line offers as choices, importable without TensorFlow.

`bnkeras train --help` lists these without importing the model code; a test checks
that they equal the names the factories accept (`models.MODELS`, `norms.NORMS`,
the strategies of the config).
"""

CIFAR_DEPTHS = (8, 14, 20, 32, 44, 56, 110)
MODELS = (
    *(f"resnet{depth}" for depth in CIFAR_DEPTHS),
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
)
NORMS = ("bn", "renorm", "ghost", "keras", "none")
STRATEGIES = ("default", "mirrored", "multiworker")
MIXED_PRECISION = ("float16", "bfloat16")
JIT_COMPILE = {"auto": "auto", "true": True, "false": False}
