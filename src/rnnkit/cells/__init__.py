"""Cells: one step of each recurrence of the lecture, and its parameters."""

from .base import Cell, gates_reported, normalize_lags, report_gates
from .feedback import FeedbackCell, TeacherForcedCell
from .gru import GRUCell
from .lstm import LSTMCell
from .simple import LinearCell, SimpleCell

__all__ = [
    "Cell", "normalize_lags", "report_gates", "gates_reported", "SimpleCell", "LinearCell",
    "LSTMCell", "GRUCell", "FeedbackCell", "TeacherForcedCell",
]
