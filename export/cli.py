"""`bnkeras export`: the command-line face of `bnkeras.export.export_model`.

Only `bnkeras.export.formats` is imported at module level: the parser is built
without TensorFlow; `run` imports the pipeline.
"""

import logging
import sys

from bnkeras.errors import Error
from bnkeras.export.formats import DEFAULT_FORMATS, DEFAULT_OPSET, FORMATS

logger = logging.getLogger(__name__)

HELP = "Fold BN into conv/dense weights, write .keras / SavedModel / ONNX / LiteRT / OpenVINO and verify each."


def add_arguments(parser):
    parser.add_argument("source", help="a .keras model file or a training work directory")
    parser.add_argument(
        "--out",
        required=True,
        help="output directory: new, or with --overwrite an empty one or a previous export",
    )
    parser.add_argument(
        "--formats",
        default=",".join(DEFAULT_FORMATS),
        help=f"comma-separated formats to write, of {','.join(FORMATS)} "
        f"(default: {','.join(DEFAULT_FORMATS)})",
    )
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    parser.add_argument(
        "--rtol", type=float, default=None, help="relative tolerance (default 1e-4 for float32)"
    )
    parser.add_argument(
        "--atol", type=float, default=None, help="absolute tolerance (default 1e-5 for float32)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="batch used for verification and timing"
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write model_int8.tflite (post-training int8, calibrated on the run's data)",
    )
    parser.add_argument(
        "--int8-max-drop",
        type=float,
        default=1.0,
        help="largest accepted top-1 accuracy drop of the int8 model, in points (default 1)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a previous export (or an empty directory) at --out",
    )


def run(args):
    from bnkeras.export import export_model  # TensorFlow's backend only

    try:
        result = export_model(
            args.source,
            args.out,
            formats=args.formats.split(","),
            opset=args.opset,
            rtol=args.rtol,
            atol=args.atol,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            int8=args.int8,
            int8_max_drop=args.int8_max_drop,
        )
    except Error as error:
        print(f"bnkeras export: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: printed by bnkeras/_signals.py
        raise KeyboardInterrupt(
            f"interrupted; no partial export is left at {args.out}: rerun the same command"
        ) from None
    if not result.passed:
        print(
            f"bnkeras export: verification FAILED; see {result.out_dir / 'report.json'}",
            file=sys.stderr,
        )
        return 1
    logger.info(f"wrote {result.out_dir} (all formats verified)")
    return 0
