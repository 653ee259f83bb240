"""Forecasting: series from a CSV, the windows protocol, its baselines and metrics, and the task.

:mod:`.series` reads the file, :mod:`.training` fits forecasters and the linear baselines,
:mod:`.scoring` scores every forecast, :mod:`.task` is ``rnnkit train --task forecast``.
"""

from ..protocol import decay_schedule, training_callbacks
from .forecaster import Forecaster
from .scoring import (
                      BASELINES,
                      NAMES,
                      baseline_forecasts,
                      errors,
                      point_index,
                      quantile_scores,
                      scores,
                      unit_errors,
                      verdict,
)
from .series import SeriesData, load_series, numeric_columns, split_rows, target_names
from .task import Forecast, ForecastOptions
from .training import compiled_forecaster, fit_forecaster, linear_baseline, predictions

__all__ = [
    "Forecaster",
    "BASELINES", "NAMES", "Forecast", "ForecastOptions", "SeriesData", "baseline_forecasts",
    "compiled_forecaster", "decay_schedule", "errors", "fit_forecaster", "linear_baseline",
    "load_series", "numeric_columns", "point_index", "predictions", "quantile_scores", "scores",
    "split_rows", "target_names", "training_callbacks", "unit_errors", "verdict",
]
