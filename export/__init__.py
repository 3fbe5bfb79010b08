"""bnkeras.export: fold BN into conv/dense weights, write and verify export formats.

result = bnkeras.export.fold_batchnorm(model)      # FoldResult(.model, .report)
report = bnkeras.export.verify(model, inputs, folded=result.model)
bnkeras.export.export_model("model.keras", "out/")  # what `bnkeras export` runs
"""

import importlib

# public name -> the submodule defining it, imported on first access (PEP 562): importing
# bnkeras.export stays light (the `bnkeras` command builds its parser from bnkeras.export.cli
# without TensorFlow), and every name works however the process started.
_PUBLIC = {
    "ExportError": "pipeline",
    "ExportResult": "pipeline",
    "FoldError": "fold",
    "FoldReport": "fold",
    "FoldResult": "fold",
    "VerifyReport": "verification",
    "count_bn": "fold",
    "export_model": "pipeline",
    "fold_batchnorm": "fold",
    "verify": "verification",
}

__all__ = [*sorted(_PUBLIC)]


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _PUBLIC[name] == "pipeline":
        # The pipeline writes its formats through TensorFlow (the fold and verify need none).
        from bnkeras._backend import require_tensorflow

        require_tensorflow("bnkeras.export.export_model (SavedModel, ONNX, LiteRT, OpenVINO)")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)


def __dir__():
    return sorted({*globals(), *_PUBLIC})
