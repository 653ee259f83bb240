"""Old home of the weight penalties; they live in :mod:`rnnkit.layers.regularizers` now."""

from ..layers.regularizers import L1, L1L2, L2, get, l1, l1_l2, l2

__all__ = ["l1", "l2", "l1_l2", "L1", "L2", "L1L2", "get"]
