"""`bnkeras export`: the command-line face of `bnkeras.export.export_model`.

Only `bnkeras.export.formats` is imported at module level: the parser is built
without TensorFlow; `run` imports the pipeline.
"""

import logging
import sys

from bnkeras.export.formats import DEFAULT_OPSET, FORMATS

logger = logging.getLogger(__name__)

HELP = "Fold BN into conv/dense weights, write .keras / SavedModel / ONNX and verify each."


def add_arguments(parser):
    parser.add_argument("source", help="a .keras model file or a training work directory")
    parser.add_argument(
        "--out", required=True, help="output directory (must not exist unless --overwrite)"
    )
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"comma-separated formats to write (default: {','.join(FORMATS)})",
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
        "--overwrite", action="store_true", help="replace an existing output directory"
    )


def run(args):
    from bnkeras.export.pipeline import ExportError, export_model

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
        )
    except ExportError as error:
        print(f"bnkeras export: error: {error}", file=sys.stderr)
        return 2
    if not result.passed:
        print(
            f"bnkeras export: verification FAILED; see {result.out_dir / 'report.json'}",
            file=sys.stderr,
        )
        return 1
    logger.info(f"wrote {result.out_dir} (all formats verified)")
    return 0
