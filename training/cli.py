"""`bnkeras train` and `bnkeras evaluate`: parse, load the preset, call the library."""

import sys

TRAIN_HELP = "Train (or resume) a classifier with a chosen norm layer in a work directory."
EVALUATE_HELP = "Print loss, top-1 and top-5 accuracy of a trained run or a .keras model."

# flag -> config key
FLAGS = {
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "model": "model.name",
    "norm": "norm.name",
    "dataset": "data.dataset",
    "data_dir": "data.data_dir",
    "lr": "train.lr",
    "strategy": "train.strategy",
    "precise_bn_batches": "train.precise_bn_batches",
}


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
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--batch-size", type=int, help="global batch size")
        parser.add_argument(
            "--model", help="resnet8/14/20/32/44/56/110 (CIFAR), resnet18/34/50, mobilenet_v2"
        )
        parser.add_argument("--norm", help="bn | renorm | ghost | keras | none")
        parser.add_argument("--dataset", help="bnkeras_shapes (embedded), a TFDS name, or 'folder'")
        parser.add_argument(
            "--data-dir", help="TFDS data dir, or the image folder for --dataset folder"
        )
        parser.add_argument(
            "--lr", type=float, help="peak learning rate (per 256 images with lr_scaling=linear)"
        )
        parser.add_argument("--strategy", help="default | mirrored | multiworker (TF_CONFIG)")
        parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 policy")
        parser.add_argument("--sync-bn", action="store_true", help="BN statistics across replicas")
        parser.add_argument(
            "--precise-bn-batches",
            type=int,
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
        from bnkeras.training.config import ConfigError, build_config

        try:
            flat = {key: getattr(args, flag) for flag, key in FLAGS.items()}
            if args.mixed_precision:
                flat["train.mixed_precision"] = True
            if args.sync_bn:
                flat["norm.sync"] = True
            config = build_config(args.config, args.set, flat)
        except ConfigError as error:
            return _fail("train", error)
        from bnkeras.training.trainer import train_and_evaluate

        try:
            train_and_evaluate(config, args.workdir, overwrite=args.overwrite)
        except (ValueError, RuntimeError) as error:  # Training/Data/ConfigError: clean messages
            return _fail("train", error)
        except KeyboardInterrupt as interrupt:  # TrainingInterrupted says where a rerun resumes
            print(f"bnkeras train: {interrupt or 'interrupted'}", file=sys.stderr)
            return 130
        return 0


class _Evaluate:
    @staticmethod
    def add_arguments(parser):
        parser.add_argument("source", help="a training work directory or a .keras model file")
        parser.add_argument(
            "--dataset", help="override the run's dataset (needed for a .keras file)"
        )
        parser.add_argument("--data-dir", help="TFDS data dir or image folder")
        parser.add_argument("--batch-size", type=int)
        parser.add_argument(
            "--image-size", type=int, help="image size for a model that takes any size"
        )
        parser.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")

    @staticmethod
    def run(args):
        from bnkeras.training.evaluate import evaluate

        try:
            metrics = evaluate(
                args.source,
                dataset=args.dataset,
                data_dir=args.data_dir,
                batch_size=args.batch_size,
                image_size=args.image_size,
                json_path=args.json,
            )
        except (ValueError, RuntimeError) as error:
            return _fail("evaluate", error)
        print(
            f"loss {metrics['loss']:.4f}  top-1 {metrics['top1']:.4f}  top-5 {metrics['top5']:.4f}  "
            f"({metrics['examples']} images)"
        )
        return 0


def _fail(command, error):
    print(f"bnkeras {command}: error: {error}", file=sys.stderr)
    return 2


train = _Train
evaluate = _Evaluate
