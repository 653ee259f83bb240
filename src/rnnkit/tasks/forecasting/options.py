"""The forecast task's options: ``rnnkit train --task forecast --help`` lists them; a wide CSV
(each column a series) or, with ``--id-col``, a long table of many series (a panel)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ForecastOptions:
    """Options of the forecast task (docs/cli.md describes each)."""

    target: str = ""
    features: list[str] = field(default_factory=list)
    lookback: int = 96
    horizon: int = 1
    delay: int = 0
    step: int = 1
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    season: int = 24
    loss: str = "mse"
    segment: int = 24
    dropout: float = 0.0
    normalization: str = "last"
    decoding: str = "parallel"
    no_channel_embedding: bool = False
    quantiles: list[float] = field(default_factory=list)
    plot_step: int = 1
    # panels: a long table, one row per (series, time)
    id_col: str = ""
    time_col: str = "ds"
    future_covariates: list[str] = field(default_factory=list)
    static_covariates: list[str] = field(default_factory=list)
    calendar: str = ""
    series_embedding: bool = False
    fill: str = ""
    sort: bool = False
    min_length: int = 0
    test_size: int = 0
    val_size: int = 0
    windows_per_series: int = 0
    scaling: str = "standard"
    backtest_windows: int = 0
    backtest_step: int = 0
    backtest_refit: bool = False

    @property
    def panel(self) -> bool:
        """A long table of many series (``--id-col``), rather than a CSV of columns."""
        return bool(self.id_col)

    def steps(self) -> int:
        """T, the steps of a window: every ``step``-th of ``lookback`` rows."""
        return len(range(0, self.lookback, self.step))
