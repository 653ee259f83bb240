"""The doctor and tools for seeing inside recurrent layers.

``diagnose(model, x, y)`` (also ``doctor``, and ``rnnkit.doctor``) runs the lecture's NaN-loss
checklist and returns a Report; ``inside`` measures gradient through time, gate saturation and hidden states;
``plots`` draws them (matplotlib, optional).
"""

from ..plots import (
    plot_gate_statistics,
    plot_gradient_through_time,
    plot_hidden_states,
    plot_history,
    read_history,
)
from ..training import guard
from .checks import diagnose
from .inside import gate_statistics, gate_values, gradient_through_time, hidden_states
from .report import Finding, Report

doctor = diagnose
guard.register_doctor(doctor)  # fit's NaN guard adds the doctor's findings to its reports

__all__ = [
    "Finding", "Report", "diagnose", "doctor", "gate_statistics", "gate_values",
    "gradient_through_time", "hidden_states", "plot_gate_statistics",
    "plot_gradient_through_time", "plot_hidden_states", "plot_history", "read_history",
]
