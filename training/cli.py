"""`bnkeras train` and `bnkeras evaluate`: parse, load the preset, call the library.

Only the standard library and `bnkeras.training.names` are imported at module level:
the parser is built without TensorFlow.
"""

import argparse
import logging
import sys

from bnkeras.errors import Error
from bnkeras.training.names import (
    APPLICATIONS,
    JIT_COMPILE,
    MIXED_PRECISION,
    MODELS,
    NORMS,
    STRATEGIES,
)

logger = logging.getLogger(__name__)

TRAIN_HELP = "Train (or resume) a classifier with a chosen norm layer in a work directory."
EVALUATE_HELP = (
    "Print loss, top-1 and (for more than 5 classes) top-5 accuracy of a trained run or a "
    ".keras model."
)

# The value of a bare --mixed-precision: float16 with a GPU, else bfloat16 (config_overrides).
BARE_MIXED_PRECISION = "float16 on a GPU, else bfloat16"
# flag -> config key; a flag left out keeps the preset's value.
FLAGS = {
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "model": "model.name",
    "model_file": "model.file",
    "weights": "model.weights",
    "norm": "norm.name",
    "dataset": "data.dataset",
    "data_dir": "data.data_dir",
    "lr": "train.lr",
    "strategy": "train.strategy",
    "mixed_precision": "train.mixed_precision",
    "jit_compile": "train.jit_compile",
    "precise_bn_batches": "train.precise_bn_batches",
}


def _model_name(value):
    if value in MODELS or (value.startswith(APPLICATIONS) and len(value) > len(APPLICATIONS)):
        return value
    raise argparse.ArgumentTypeError(
        f"invalid model {value!r} (choose from {', '.join(MODELS)}, or keras.applications.NAME)"
    )


def _add_choice(parser, flag, choices, text):
    """A `NAME` argument whose help lists its choices (argparse would print them twice)."""
    parser.add_argument(flag, choices=choices, metavar="NAME", help=f"{text}: {', '.join(choices)}")


def _mixed_precision(value):
    if value not in (*MIXED_PRECISION, BARE_MIXED_PRECISION):  # argparse passes const here too
        raise argparse.ArgumentTypeError(
            f"invalid choice: {value!r} (choose from {', '.join(MIXED_PRECISION)})"
        )
    return value


class _Train:
    @staticmethod
    def add_arguments(parser):
        parser.add_argument(
            "--config",
            default="demo",
            help="a preset name (demo, cifar_resnet20, "
            "imagenette_resnet18, imagenet_resnet50) or a YAML file (default: demo)",
        )
        parser.add_argument("--workdir", required=True, help="run directory; rerunning resumes")
        parser.add_argument(
            "--epochs", type=int, metavar="N", help="total epochs (a larger N continues a run)"
        )
        parser.add_argument("--batch-size", type=int, metavar="N", help="global batch size")
        parser.add_argument(
            "--model",
            type=_model_name,
            metavar="NAME",
            help=f"the model: {', '.join(MODELS)} (resnet8-110 are CIFAR ResNets), or "
            "keras.applications.NAME (e.g. keras.applications.ResNet50, built with "
            "weights=None: nothing is downloaded)",
        )
        parser.add_argument(
            "--model-file",
            metavar="PATH",
            help="a .keras classifier of yours to train or fine-tune (its norms converted to "
            "--norm, its head replaced when the number of classes differs)",
        )
        parser.add_argument(
            "--weights",
            metavar="FILE",
            help="a .weights.h5 file to load into the model (e.g. pretrained weights you have)",
        )
        _add_choice(parser, "--norm", NORMS, "the norm layer")
        parser.add_argument("--dataset", help="bnkeras_shapes (embedded), a TFDS name, or 'folder'")
        parser.add_argument(
            "--data-dir", help="TFDS data dir, or the image folder for --dataset folder"
        )
        parser.add_argument(
            "--lr", type=float, help="peak learning rate (per 256 images with lr_scaling=linear)"
        )
        _add_choice(parser, "--strategy", STRATEGIES, "tf.distribute (multiworker reads TF_CONFIG)")
        parser.add_argument(
            "--mixed-precision",
            nargs="?",
            const=BARE_MIXED_PRECISION,
            type=_mixed_precision,  # not choices=, which argparse checks const against
            metavar="DTYPE",
            help="mixed precision compute dtype, float16 or bfloat16; a bare --mixed-precision "
            "picks float16 on a machine with a GPU and bfloat16 without one (CPUs emulate "
            "float16, about 100x slower; float16 asked for there is a warning)",
        )
        parser.add_argument(
            "--jit-compile",
            choices=tuple(JIT_COMPILE),
            help="XLA compilation of the train step: auto (Keras decides), true or false",
        )
        parser.add_argument("--sync-bn", action="store_true", help="BN statistics across replicas")
        parser.add_argument(
            "--precise-bn-batches",
            type=int,
            metavar="N",
            help="recompute BN statistics over N batches at the end",
        )
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="any config key, e.g. --set train.weight_decay=1e-4 (repeatable)",
        )
        parser.add_argument(
            "--overwrite", action="store_true", help="delete a previous run with another config"
        )

    @staticmethod
    def run(args):
        from bnkeras.training.config import build_config

        try:
            config = build_config(args.config, args.set, config_overrides(args))
        except Error as error:
            return _fail("train", error)
        from bnkeras.training.trainer import train_and_evaluate

        try:
            train_and_evaluate(config, args.workdir, overwrite=args.overwrite)
        except Error as error:  # bad input; anything else is a bug (bnkeras.cli.main)
            return _fail("train", error)
        # Ctrl-C, SIGTERM, SIGHUP: TrainingInterrupted (where a rerun resumes), printed by
        # bnkeras/_signals.py with the exit code 128 + the signal.
        return 0


def config_overrides(args):
    """The flat config overrides {'train.epochs': 3, ...} of the flags given in `args`."""
    flat = {key: getattr(args, flag) for flag, key in FLAGS.items()}
    if args.mixed_precision == BARE_MIXED_PRECISION:
        from bnkeras.training.trainer import default_mixed_precision

        flat["train.mixed_precision"] = default_mixed_precision()
    if args.jit_compile is not None:
        flat["train.jit_compile"] = JIT_COMPILE[args.jit_compile]
    if args.sync_bn:
        flat["norm.sync"] = True
    return {key: value for key, value in flat.items() if value is not None}


class _Evaluate:
    @staticmethod
    def add_arguments(parser):
        parser.add_argument("source", help="a training work directory or a .keras model file")
        parser.add_argument(
            "--dataset", help="override the run's dataset (needed for a .keras file)"
        )
        parser.add_argument("--data-dir", help="TFDS data dir or image folder")
        parser.add_argument(
            "--batch-size",
            type=int,
            metavar="N",
            help="evaluation batch size (default: the run's train.batch_size, else 128)",
        )
        parser.add_argument(
            "--image-size",
            type=int,
            metavar="N",
            help="image size for a .keras model that takes any size",
        )
        parser.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")

    @staticmethod
    def run(args):
        from bnkeras.training.evaluation import evaluate

        try:
            metrics = evaluate(
                args.source,
                dataset=args.dataset,
                data_dir=args.data_dir,
                batch_size=args.batch_size,
                image_size=args.image_size,
                json_path=args.json,
            )
        except Error as error:
            return _fail("evaluate", error)
        top5 = f"  top-5 {metrics['top5']:.4f}" if metrics["top5"] is not None else ""
        logger.info(
            f"loss {metrics['loss']:.4f}  top-1 {metrics['top1']:.4f}{top5}  "
            f"({metrics['examples']} images)"
        )
        return 0


def _fail(command, error):
    print(f"bnkeras {command}: error: {error}", file=sys.stderr)
    return 2


train = _Train
evaluate = _Evaluate
