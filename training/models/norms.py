"""The norm-layer factory of the models: `bnkeras.norms` (one owner), under its old name."""

from bnkeras.norms import NORMS, get_norm

__all__ = ["NORMS", "get_norm"]
