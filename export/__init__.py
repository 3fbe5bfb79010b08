"""bnkeras.export: fold BN into conv/dense weights, write and verify export formats.

result = bnkeras.export.fold_batchnorm(model)      # FoldResult(.model, .report)
report = bnkeras.export.verify(model, inputs, folded=result.model)
"""

from bnkeras.export.fold import FoldError, FoldReport, FoldResult, count_bn, fold_batchnorm

__all__ = ["FoldError", "FoldReport", "FoldResult", "count_bn", "fold_batchnorm"]
