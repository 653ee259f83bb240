"""Old home of the doctor's plots; every figure lives in :mod:`rnnkit.plots` now."""

from ..plots import (
    plot_gate_statistics,
    plot_gradient_through_time,
    plot_hidden_states,
    plot_history,
    read_history,
)

__all__ = ["plot_gate_statistics", "plot_gradient_through_time", "plot_hidden_states",
           "plot_history", "read_history"]
