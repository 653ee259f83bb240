"""Old home of the trainer's data feed; it lives in :mod:`rnnkit.training.data` now."""

from ..training.data import (
    ArrayData,
    Batch,
    BatchStream,
    check_finite,
    is_array_like,
    to_tensor,
    unpack,
    warn_ran_out,
)

__all__ = ["ArrayData", "Batch", "BatchStream", "check_finite", "is_array_like", "to_tensor",
           "unpack", "warn_ran_out"]
