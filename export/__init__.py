"""bnkeras.export: fold BN into conv/dense weights, write and verify export formats.

result = bnkeras.export.fold_batchnorm(model)      # FoldResult(.model, .report)
report = bnkeras.export.verify(model, inputs, folded=result.model)
bnkeras.export.export_model("model.keras", "out/")  # what `bnkeras export` runs
"""

import bnkeras

__all__ = [
    "ExportError",
    "ExportResult",
    "FoldError",
    "FoldReport",
    "FoldResult",
    "VerifyReport",
    "count_bn",
    "export_model",
    "fold_batchnorm",
    "verify",
]

# The `bnkeras` command builds its parser from bnkeras.export.cli without TensorFlow;
# bnkeras.export.cli imports the pipeline when it runs.
if not bnkeras._COMMAND_LINE:
    from bnkeras.export.fold import FoldError, FoldReport, FoldResult, count_bn, fold_batchnorm
    from bnkeras.export.verify import VerifyReport, verify

_PIPELINE = ("ExportError", "ExportResult", "export_model")


def __getattr__(name):
    # The pipeline writes its formats through TensorFlow: imported on first use, on
    # the TensorFlow backend (the fold and verify need no TensorFlow).
    if name in _PIPELINE:
        from bnkeras._backend import require_tensorflow

        require_tensorflow("bnkeras.export.export_model (SavedModel, ONNX, LiteRT, OpenVINO)")
        from bnkeras.export import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'bnkeras.export' has no attribute {name!r}")
