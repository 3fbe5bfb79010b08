"""bnkeras.export: fold BN into conv/dense weights, write and verify export formats."""
