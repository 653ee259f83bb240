"""Panels: many series in one long table (neuralforecast's format), stored concatenated.

A long table has one row per (series, time): an id column, a time column ``ds`` (integer steps or
timestamps), one or more targets and covariates. :func:`read_long` checks it and returns a
:class:`Panel`: the rows grouped by series (series in order of first appearance; sorted by id with
``sort=True``), each series in time order, all series concatenated into one (N, C) array with
``offsets`` (S + 1,) marking where each starts. Nothing is copied per window: windows are index
arithmetic over these arrays (:mod:`rnnkit.data.panel_windows`).

Legend: S series, N rows of all series together, C value channels (targets first, then
past-observed covariates), F known-future covariates (calendar features included), K static
columns, H horizon, L lookback.

Splits follow M4 and neuralforecast: the test is the last ``test_size`` steps of every series,
validation the ``val_size`` before it, training what comes before (:func:`split_borders`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataFormatError

FILLS = ("ffill", "zero", "interpolate")
CALENDAR = ("minute", "hour", "dayofweek", "dayofmonth", "dayofyear", "month", "weekofyear")
# the CLI's names of read_long's arguments, so every error says which option to change
OPTION = {"id_col": "--id-col", "time_col": "--time-col", "target": "--target",
          "past_covariates": "--past-covariates", "future_covariates": "--future-covariates",
          "static_covariates": "--static-covariates"}
_DAY = np.timedelta64(1, "D")


@dataclass
class Panel:
    """S series stored concatenated: series i is rows ``offsets[i]:offsets[i + 1]``.

    ``times`` (N,) int64 steps or datetime64[ns]; ``values`` (N, C) float64 of ``columns``,
    the ``targets`` (indices into ``columns``) first; ``future`` (N, F) float64 known-future
    covariates of ``future_columns`` (the last ones the ``calendar`` features "cal_<name>");
    ``static`` (S, K) float64 of ``static_columns`` (a text static one-hot encoded as
    "<column>=<category>", its categories in ``static_categories``); ``freq`` the step (an int,
    a numpy timedelta64 — in months 'M' for monthly, quarterly and yearly data — or None when
    no series has two rows). ``appended`` rows at the end of every series were added by
    :meth:`extend` for a forecast: their ``values`` are NaN.
    """

    ids: list[str]
    offsets: np.ndarray
    times: np.ndarray
    values: np.ndarray
    columns: list[str]
    targets: list[int]
    future: np.ndarray | None = None
    future_columns: list[str] = field(default_factory=list)
    static: np.ndarray | None = None
    static_columns: list[str] = field(default_factory=list)
    static_categories: dict[str, list[str]] = field(default_factory=dict)
    freq: int | np.timedelta64 | None = None
    calendar: list[str] = field(default_factory=list)
    appended: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def series(self, i: int) -> slice:
        """The rows of series ``i``."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def length(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    def lengths(self) -> np.ndarray:
        """(S,) rows per series."""
        return np.diff(self.offsets)

    def select(self, indices: Sequence[int]) -> Panel:
        """The series ``indices`` (in that order) as a new Panel (a copy of their rows)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        lengths = self.lengths()[idx]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        rows = np.repeat(self.offsets[idx] - offsets[:-1], lengths) + np.arange(offsets[-1])
        return replace(self, ids=[self.ids[i] for i in idx], offsets=offsets,
                       times=self.times[rows], values=self.values[rows],
                       future=None if self.future is None else self.future[rows],
                       static=None if self.static is None else self.static[idx])

    def extend(self, horizon: int, future: pd.DataFrame | None = None, id_col: str = "unique_id",
               time_col: str = "ds") -> Panel:
        """Every series ``horizon`` steps longer, for a forecast: the new rows' values are NaN,
        their known-future covariates come from the long table ``future`` (one row per series
        and new step) and their calendar features are computed."""
        if horizon < 1:
            raise ConfigError(f"Panel.extend: horizon must be >= 1, got {horizon}")
        if self.appended:
            raise ConfigError(f"Panel.extend: this panel already has {self.appended} appended rows")
        if self.freq is None:
            raise ConfigError("Panel.extend: the step is unknown (no series has two rows)")
        last = self.times[self.offsets[1:] - 1]  # (S,)
        new_times = np.stack([advance(last, self.freq, j) for j in range(1, horizon + 1)], 1)
        new_future = self._future_rows(new_times.reshape(-1), horizon, future, id_col, time_col)
        rows = np.arange(len(self.times)) + np.repeat(np.arange(len(self)) * horizon, self.lengths())
        offsets = self.offsets + np.arange(len(self) + 1) * horizon
        new_rows = (offsets[1:, None] - horizon + np.arange(horizon)).reshape(-1)  # (S·H,)
        n = int(offsets[-1])
        times = np.empty(n, self.times.dtype)
        times[rows], times[new_rows] = self.times, new_times.reshape(-1)
        values = np.full((n, self.values.shape[1]), np.nan)
        values[rows] = self.values
        out_future = None
        if self.future is not None:
            out_future = np.empty((n, self.future.shape[1]))
            out_future[rows], out_future[new_rows] = self.future, new_future
        return replace(self, offsets=offsets, times=times,
                       values=values, future=out_future, appended=horizon)

    def _future_rows(self, times: np.ndarray, horizon: int, future: pd.DataFrame | None,
                     id_col: str, time_col: str) -> np.ndarray | None:
        """(S·H, F) known-future covariates of the appended rows, series by series."""
        if self.future is None:
            return None
        given = self.future_columns[:len(self.future_columns) - len(self.calendar)]
        parts = []
        if given:
            parts.append(_lookup_future(future, given, [i for i in self.ids for _ in range(horizon)],
                                        times, id_col, time_col))
        if self.calendar:
            parts.append(calendar_features(times, self.calendar, self.freq).astype(np.float64))
        return np.concatenate(parts, axis=1)


def _lookup_future(future: pd.DataFrame | None, columns: list[str], ids: list[str],
                   times: np.ndarray, id_col: str, time_col: str) -> np.ndarray:
    """The ``columns`` of ``future`` at each (id, time), in that order; every pair must exist."""
    if future is None:
        raise ConfigError(f"Panel.extend: the future covariates {columns} are needed for the "
                          f"forecast rows; pass them as a long table (id, ds, covariates)")
    _check_columns(future, {"id_col": [id_col], "time_col": [time_col], "future_covariates": columns},
                   "the future DataFrame")
    keys = pd.DataFrame({id_col: ids, time_col: times})
    table = future[[id_col, time_col, *columns]].drop_duplicates([id_col, time_col])
    table[id_col] = table[id_col].astype(str)
    table[time_col] = _parse_times(table[time_col], table.index, "the future DataFrame")
    merged = keys.merge(table, how="left", on=[id_col, time_col], validate="many_to_one")
    missing = ~np.isfinite(merged[columns].to_numpy(dtype=np.float64, na_value=np.nan)).all(axis=1)
    if missing.any():
        i = int(np.argmax(missing))
        raise DataFormatError(f"the future DataFrame: series {ids[i]!r}, ds {times[i]}: no finite values "
                              f"of the future covariates {columns} ({OPTION['future_covariates']})")
    return merged[columns].to_numpy(dtype=np.float64)


# -- reading a long table --------------------------------------------------------------------------

def read_long(source: str | Path | pd.DataFrame, id_col: str = "unique_id", time_col: str = "ds",
              target: str | Sequence[str] = "y", past_covariates: Sequence[str] = (),
              future_covariates: Sequence[str] = (), static_covariates: Sequence[str] = (),
              fill: str | None = None, sort: bool = False,
              calendar: str | Sequence[str] | None = None) -> Panel:
    """A long table (a CSV path or a DataFrame, one row per series and time) as a :class:`Panel`.

    Series may differ in length and start. ``ds`` holds integer steps or timestamps (text is
    parsed as dates). Rows of a series must come in increasing time (``sort=True`` sorts by id,
    then time, and orders the series by id); a missing step — relative to the panel's step, the
    most common difference — is an error unless ``fill`` ('ffill', 'zero' or 'interpolate')
    inserts and fills it. Every target and covariate cell must be a finite number, and a static
    covariate constant within its series. ``calendar`` ('auto' or names from ``CALENDAR``)
    appends :func:`calendar_features` to the known-future covariates. Errors name the option,
    series, time and row (the file's line, header = 1, or the DataFrame's index label).
    """
    targets = [target] if isinstance(target, str) else list(target)
    if not targets:
        raise ConfigError(f"read_long: no target column ({OPTION['target']})")
    if fill is not None and fill not in FILLS:
        raise ConfigError(f"read_long: --fill must be one of {FILLS}, got {fill!r}")
    wanted = {"id_col": [id_col], "time_col": [time_col], "target": targets,
              "past_covariates": list(past_covariates), "future_covariates": list(future_covariates),
              "static_covariates": list(static_covariates)}
    frame, place = _load(source, wanted)
    codes, uniques = pd.factorize(frame[id_col], sort=sort)
    ids = [str(u) for u in uniques]
    labels = frame.index  # a RangeIndex stays a range: errors look single labels up
    times = _parse_times(frame[time_col], labels, place)
    channels = {**dict.fromkeys(targets, "target"),  # targets first, then past covariates
                **{c: "past_covariates" for c in past_covariates if c not in targets}}
    values = _numbers(frame, channels, labels, codes, ids, times, place)
    future = _numbers(frame, dict.fromkeys(future_covariates, "future_covariates"), labels, codes, ids,
                      times, place)
    static, static_columns, categories = _statics(frame, list(static_covariates), labels, codes,
                                                  ids, place)
    order = np.lexsort((times, codes)) if sort else \
        None if (np.diff(codes) >= 0).all() else np.argsort(codes, kind="stable")
    if order is not None:  # a table already grouped by series is not copied again
        codes, times, values, future = codes[order], times[order], values[order], future[order]
        labels = _Reordered(labels, order)
    _check_order(codes, times, labels, list(ids), place)
    offsets = np.searchsorted(codes, np.arange(len(ids) + 1)).astype(np.int64)
    panel = Panel(ids, offsets, times, values, list(channels),
                  list(range(len(targets))), future if future.shape[1] else None,
                  list(future_covariates), static, static_columns, categories)
    panel.freq = _infer_step(panel)
    panel = _fill_gaps(panel, labels, fill, place)
    return _with_calendar(panel, calendar) if calendar else panel


class _Reordered:
    """The labels of the table's rows in a new order, looked up one at a time (for errors)."""

    def __init__(self, labels: pd.Index, order: np.ndarray):
        self.labels, self.order = labels, order

    def __getitem__(self, i: int):
        return self.labels[self.order[i]]


def _load(source: str | Path | pd.DataFrame, wanted: dict[str, list[str]]) -> tuple[pd.DataFrame, str]:
    """The needed columns of the table, blank lines dropped, index = CSV line - 2 (or the
    DataFrame's labels); and the place's name for errors ('file.csv' or 'the DataFrame')."""
    needed = list(dict.fromkeys(c for cols in wanted.values() for c in cols))
    if isinstance(source, pd.DataFrame):
        _check_columns(source, wanted, "the DataFrame")
        return source[needed], "the DataFrame"
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    _check_columns(pd.read_csv(path, nrows=0), wanted, str(path))
    frame = pd.read_csv(path, usecols=needed, dtype={wanted["id_col"][0]: str},
                        skip_blank_lines=False)
    frame = frame[~frame.isna().all(axis=1)]  # blank lines keep their numbers out of the index
    if frame.empty:
        raise DataFormatError(f"{path}: no data rows after the header")
    return frame, str(path)


def _check_columns(frame: pd.DataFrame, wanted: dict[str, list[str]], place: str) -> None:
    for option, columns in wanted.items():
        for column in columns:
            if column not in frame.columns:
                raise ConfigError(f"{place}: no column {column!r} ({OPTION[option]}); the table has "
                                  f"{list(frame.columns)}")


def _row(place: str, label) -> str:
    """'data.csv: line 7' (1-based, header line 1) or 'the DataFrame: row <label>'."""
    if place.endswith("DataFrame"):
        return f"{place}: row {_show(label)}"
    return f"{place}: line {int(label) + 2}"


def _show(cell) -> str:
    """A cell as the user wrote it: 'abc', nan, 7 (not np.float64(nan))."""
    return repr(cell.item() if isinstance(cell, np.generic) else cell)


def _parse_times(column: pd.Series, labels: pd.Index | _Reordered, place: str) -> np.ndarray:
    """(N,) int64 steps or datetime64[ns] of the time column; text is parsed as dates."""
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(column.dtype):
        raw = column.to_numpy()
        bad = ~np.isfinite(raw) | (raw != np.round(raw))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataFormatError(f"{_row(place, labels[i])}: {OPTION['time_col']} {column.name!r} "
                                  f"holds {_show(raw[i])}, not an integer step or a date")
        return raw.astype(np.int64)
    parsed = pd.to_datetime(column, errors="coerce")
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_convert(None)
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFormatError(f"{_row(place, labels[i])}: {OPTION['time_col']} {column.name!r} "
                              f"holds {_show(column.iloc[i])}, not an integer step or a date")
    return parsed.to_numpy(dtype="datetime64[ns]")


def _numbers(frame: pd.DataFrame, columns: dict[str, str], labels: pd.Index | _Reordered, codes: np.ndarray,
             ids, times: np.ndarray, place: str) -> np.ndarray:
    """(N, len(columns)) float64 of ``columns`` (name -> read_long's option); a cell that is not
    a finite number raises, naming it."""
    out = np.empty((len(frame), len(columns)))
    for j, (column, option) in enumerate(columns.items()):
        out[:, j] = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64,
                                                                         na_value=np.nan)
        bad = ~np.isfinite(out[:, j])
        if bad.any():
            i = int(np.argmax(bad))
            raise DataFormatError(f"{_row(place, labels[i])}: series {ids[codes[i]]!r}, ds "
                                  f"{times[i]}: column {column!r} ({OPTION[option]}) holds "
                                  f"{_show(frame[column].iloc[i])}, not a finite number")
    return out


def _statics(frame: pd.DataFrame, columns: list[str], labels: pd.Index | _Reordered, codes: np.ndarray, ids,
             place: str) -> tuple[np.ndarray | None, list[str], dict[str, list[str]]]:
    """(S, K) float64 statics: numeric columns as they are, text columns one-hot (categories
    sorted); each must hold one value per series."""
    if not columns:
        return None, [], {}
    first = np.zeros(len(ids), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # the first row of every series
    parts, names, categories = [], [], {}
    for column in columns:
        cells = frame[column].to_numpy()
        reference = cells[first][codes]
        differs = ~((cells == reference) | (pd.isna(cells) & pd.isna(reference)))
        if differs.any():
            i = int(np.argmax(differs))
            raise DataFormatError(f"{_row(place, labels[i])}: series {ids[codes[i]]!r}: static "
                                  f"covariate {column!r} ({OPTION['static_covariates']}) holds "
                                  f"{_show(cells[i])} here but {_show(cells[first[codes[i]]])} in its "
                                  f"first row; a static covariate must be constant within a series")
        per_series = frame[column].iloc[first]
        if pd.api.types.is_numeric_dtype(per_series.dtype):
            numbers = per_series.to_numpy(dtype=np.float64, na_value=np.nan)
            if not np.isfinite(numbers).all():
                i = int(np.argmax(~np.isfinite(numbers)))
                raise DataFormatError(f"{_row(place, labels[first[i]])}: series {ids[i]!r}: static "
                                      f"covariate {column!r} is not a finite number")
            parts.append(numbers[:, None])
            names.append(column)
        else:
            text = per_series.astype(str).to_numpy()
            cats = sorted(set(text))
            categories[column] = cats
            parts.append(encode_static(text, cats))
            names += [f"{column}={c}" for c in cats]
    return np.concatenate(parts, axis=1), names, categories


def encode_static(values: Sequence[str], categories: Sequence[str]) -> np.ndarray:
    """(S,) text -> (S, len(categories)) one-hot float64; an unseen value is all zeros."""
    index = {c: k for k, c in enumerate(categories)}
    out = np.zeros((len(values), len(categories)))
    for i, v in enumerate(values):
        if v in index:
            out[i, index[v]] = 1.0
    return out


def _check_order(codes: np.ndarray, times: np.ndarray, labels: pd.Index | _Reordered, ids: list,
                 place: str) -> None:
    """Times strictly increase within every series (rows grouped by series, in table order)."""
    same = codes[1:] == codes[:-1]
    step = _as_int(times[1:]) - _as_int(times[:-1])
    bad = same & (step <= 0)
    if not bad.any():
        return
    duplicate = _first_duplicate(codes, times)
    if duplicate is not None:
        i, j = duplicate
        raise DataFormatError(f"{_row(place, labels[i])}: series {ids[codes[i]]!r}, ds {times[i]}: a "
                              f"duplicate row (the same {OPTION['id_col']} and {OPTION['time_col']} as "
                              f"{_row(place, labels[j])})")
    i = int(np.argmax(bad)) + 1
    series = ids[codes[i]]
    raise DataFormatError(f"{_row(place, labels[i])}: series {series!r}: ds {times[i]} comes after "
                          f"{times[i - 1]} ({_row(place, labels[i - 1])}); the rows of a series must "
                          f"increase in time: sort the table by (id, ds) or pass --sort")


def _first_duplicate(codes: np.ndarray, times: np.ndarray) -> tuple[int, int] | None:
    """(the first row whose (id, ds) came before, that earlier row), positions in the given
    order; None without duplicates."""
    order = np.lexsort((times, codes))
    same = (codes[order][1:] == codes[order][:-1]) & (times[order][1:] == times[order][:-1])
    if not same.any():
        return None
    a, b = order[1:][same], order[:-1][same]  # the two rows of each equal pair
    k = int(np.argmin(np.maximum(a, b)))
    return int(max(a[k], b[k])), int(min(a[k], b[k]))


def _as_int(times: np.ndarray) -> np.ndarray:
    return times.view(np.int64) if times.dtype.kind in "mM" else times


# -- the step, gaps and filling ---------------------------------------------------------------------

def _infer_step(panel: Panel) -> int | np.timedelta64 | None:
    """The most common difference between consecutive times of a series; in months when that
    is a calendar month, quarter or year (whose lengths in days vary)."""
    diffs = _within(panel, _as_int(panel.times))
    if not len(diffs):
        return None
    values, counts = np.unique(diffs, return_counts=True)
    mode = values[np.argmax(counts)]
    if panel.times.dtype.kind != "M":
        return int(mode)
    days = mode / 86_400e9
    if 28 <= days <= 31 or 89 <= days <= 92 or 365 <= days <= 366:
        months = _within(panel, _months(panel.times))
        values, counts = np.unique(months, return_counts=True)
        return np.timedelta64(int(values[np.argmax(counts)]), "M")
    return np.timedelta64(int(mode), "ns")


def _within(panel: Panel, x: np.ndarray) -> np.ndarray:
    """Differences of consecutive rows of the same series, (N - S,)."""
    d = np.diff(x)
    same = np.ones(len(d), dtype=bool)
    same[panel.offsets[1:-1] - 1] = False
    return d[same]


def _months(times: np.ndarray) -> np.ndarray:
    return times.astype("datetime64[M]").astype(np.int64)


def _steps(panel: Panel) -> np.ndarray:
    """(N - 1,) the difference of row r + 1 to row r in steps (an int64 or a fraction for a
    time off the step; 1 between series)."""
    freq = panel.freq
    if freq is None:
        return np.ones(max(len(panel.times) - 1, 0))
    if _monthly(freq):
        d = np.diff(_months(panel.times)) / int(freq.astype(np.int64))
    else:
        d = np.diff(_as_int(panel.times)) / _as_int(np.asarray(freq))
    d[panel.offsets[1:-1] - 1] = 1
    return d


def advance(times: np.ndarray, freq, j: int | np.ndarray) -> np.ndarray:
    """``times`` plus ``j`` steps (an int or one per time); monthly steps keep the day in the
    month, and month ends stay month ends."""
    if not _monthly(freq):
        return times + np.asarray(j) * freq
    month = times.astype("datetime64[M]")
    to_next = (month + 1).astype(times.dtype) - times  # how far before the next month
    target = month + np.asarray(j) * int(freq.astype(np.int64))
    ends = (target + 1).astype(times.dtype) - to_next
    return np.where(to_next <= _DAY, ends, target.astype(times.dtype) + (times - month.astype(times.dtype)))


def _monthly(freq) -> bool:
    return isinstance(freq, np.timedelta64) and np.datetime_data(freq.dtype)[0] == "M"


def _fill_gaps(panel: Panel, labels: pd.Index | _Reordered, fill: str | None, place: str) -> Panel:
    """Missing steps inserted and filled by ``fill``, or an error naming the first."""
    steps = _steps(panel)
    off_step = (steps != np.round(steps)) | (steps < 1)
    if off_step.any():
        i = int(np.argmax(off_step)) + 1
        raise DataFormatError(f"{_row(place, labels[i])}: series {_series_of(panel, i)!r}: ds "
                              f"{panel.times[i]} is not a whole number of the panel's step "
                              f"{panel.freq} (its most common difference) after {panel.times[i - 1]}")
    missing = np.concatenate([[0], steps.astype(np.int64) - 1])  # (N,) rows missing before row r
    if not missing.any():
        return panel
    if fill is None:
        i = int(np.argmax(missing > 0))
        raise DataFormatError(f"{_row(place, labels[i])}: series {_series_of(panel, i)!r}: "
                              f"{missing[i]} step(s) missing between ds {panel.times[i - 1]} and "
                              f"{panel.times[i]} (the panel's step is {panel.freq}, its most common "
                              f"difference); pass --fill ffill, zero or interpolate to fill them")
    return _insert(panel, missing, fill)


def _series_of(panel: Panel, row: int) -> str:
    return panel.ids[int(np.searchsorted(panel.offsets, row, side="right")) - 1]


def _insert(panel: Panel, missing: np.ndarray, fill: str) -> Panel:
    """Insert ``missing[r]`` rows before every row r and fill them (values and future)."""
    new_index = np.arange(len(missing)) + np.cumsum(missing)  # (N,) where the old rows go
    n = int(new_index[-1]) + 1
    after = np.repeat(np.flatnonzero(missing), missing[missing > 0])  # (M,) the row after each gap row
    k = missing[after] + 1  # (M,) the gap in steps
    j = np.arange(len(after)) - np.repeat(np.cumsum(missing[missing > 0]) - missing[missing > 0],
                                          missing[missing > 0]) + 1  # (M,) 1 .. k - 1 in each gap
    where = new_index[after - 1] + j
    times = np.empty(n, panel.times.dtype)
    times[new_index] = panel.times
    times[where] = advance(panel.times[after - 1], panel.freq, j)
    out = {}
    for name in ("values", "future"):
        old = getattr(panel, name)
        if old is None:
            out[name] = None
            continue
        new = np.empty((n, old.shape[1]))
        new[new_index] = old
        new[where] = _filled(old[after - 1], old[after], (j / k)[:, None], fill)
        out[name] = new
    offsets = np.append(new_index[panel.offsets[:-1]], n)
    return replace(panel, offsets=offsets, times=times, **out)


def _filled(before: np.ndarray, after: np.ndarray, fraction: np.ndarray, fill: str) -> np.ndarray:
    """The values of gap rows from their neighbours: (M, C) each, ``fraction`` (M, 1) of the way."""
    if fill == "zero":
        return np.zeros_like(before)
    if fill == "ffill":
        return before
    return before + (after - before) * fraction


# -- calendar features ------------------------------------------------------------------------------

def calendar_features(times: np.ndarray, names: str | Sequence[str] = "auto",
                      freq: int | np.timedelta64 | None = None) -> np.ndarray:
    """(N,) timestamps -> (N, k) float32 in [-0.5, 0.5], as GluonTS's and neuralforecast's time
    features: hour/23, dayofweek/6, (dayofmonth-1)/30, (dayofyear-1)/365, (month-1)/11,
    (weekofyear-1)/52 (ISO week) and minute/59, each minus 0.5.

    ``names='auto'`` picks by the step ``freq`` (inferred from ``times`` when None): below an
    hour minute, hour, dayofweek; hourly hour, dayofweek; daily dayofweek, dayofmonth,
    dayofyear; weekly weekofyear; monthly and quarterly month; yearly none. Integer steps have
    no calendar: 'auto' gives (N, 0), explicit names raise.
    """
    auto = isinstance(names, str) and names == "auto"
    names = [names] if isinstance(names, str) and not auto else names
    if times.dtype.kind != "M":
        if auto:
            return np.zeros((len(times), 0), np.float32)
        raise ConfigError(f"--calendar {list(names)}: the time column holds integer steps, not "
                          f"dates, so it has no calendar")
    if auto:
        names = auto_calendar(_step_of(times) if freq is None else freq)
    unknown = [n for n in names if n not in CALENDAR]
    if unknown:
        raise ConfigError(f"--calendar: unknown feature {unknown[0]!r}; choose from {CALENDAR}")
    index = pd.DatetimeIndex(times)
    fields = {"minute": (index.minute, 59), "hour": (index.hour, 23),
              "dayofweek": (index.day_of_week, 6), "dayofmonth": (index.day - 1, 30),
              "dayofyear": (index.day_of_year - 1, 365), "month": (index.month - 1, 11),
              "weekofyear": (index.isocalendar().week.to_numpy() - 1, 52)}
    out = np.empty((len(times), len(names)), np.float32)
    for k, name in enumerate(names):
        value, top = fields[name]
        out[:, k] = np.asarray(value, dtype=np.float64) / top - 0.5
    return out


def auto_calendar(freq: int | np.timedelta64 | None) -> list[str]:
    """The calendar features that suit a step (see :func:`calendar_features`)."""
    if not isinstance(freq, np.timedelta64):
        return []
    if np.datetime_data(freq.dtype)[0] in ("M", "Y"):
        return ["month"] if freq.astype("timedelta64[M]").astype(np.int64) < 12 else []
    seconds = freq.astype("timedelta64[s]").astype(np.int64)
    if seconds < 3600:
        return ["minute", "hour", "dayofweek"]
    if seconds < 86_400:
        return ["hour", "dayofweek"]
    if seconds < 7 * 86_400:
        return ["dayofweek", "dayofmonth", "dayofyear"]
    if seconds < 28 * 86_400:
        return ["weekofyear"]
    return ["month"] if seconds < 365 * 86_400 else []


def _step_of(times: np.ndarray) -> np.timedelta64 | None:
    d = np.diff(times.view(np.int64))
    d = d[d > 0]
    if not len(d):
        return None
    values, counts = np.unique(d, return_counts=True)
    return np.timedelta64(int(values[np.argmax(counts)]), "ns")


def _with_calendar(panel: Panel, calendar: str | Sequence[str]) -> Panel:
    names = auto_calendar(panel.freq) if calendar == "auto" else \
        ([calendar] if isinstance(calendar, str) else list(calendar))
    if not names:
        return panel
    features = calendar_features(panel.times, names, panel.freq).astype(np.float64)
    future = features if panel.future is None else np.concatenate([panel.future, features], 1)
    return replace(panel, future=future, calendar=list(names),
                   future_columns=panel.future_columns + [f"cal_{n}" for n in names])


# -- splits, lengths and scaling ----------------------------------------------------------------------

def split_borders(panel: Panel, test_size: int, val_size: int = 0) -> np.ndarray:
    """(S, 3) int64 per series: (end of train, end of validation, end) in rows of the series.
    The test is the last ``test_size`` steps, validation the ``val_size`` before it (as M4 and
    neuralforecast split). A series too short for them has a train end <= 0
    (:func:`check_lengths` drops it)."""
    if test_size < 0 or val_size < 0:
        raise ConfigError(f"split_borders: test_size and val_size must be >= 0, got {test_size}, "
                          f"{val_size}")
    end = panel.lengths() - panel.appended
    return np.stack([end - test_size - val_size, end - test_size, end], axis=1).astype(np.int64)


def check_lengths(panel: Panel, borders: np.ndarray, lookback: int, horizon: int,
                  min_length: int | None = None) -> tuple[np.ndarray, list[str]]:
    """(keep (S',) indices, dropped ids): a series whose training part cannot make one window
    (``lookback + horizon`` rows) is dropped. With ``min_length`` (--min-length) a series
    shorter than it raises; so does a panel where no series is long enough.

    Validation and test windows read their lookback from the rows before their origin; a kept
    series has at least ``lookback + horizon`` training rows, so that never reaches before its
    start (nothing is padded).
    """
    lengths = panel.lengths() - panel.appended
    if min_length is not None:
        short = np.flatnonzero(lengths < min_length)
        if len(short):
            names = ", ".join(f"{panel.ids[i]!r} ({lengths[i]} rows)" for i in short[:5])
            raise DataFormatError(f"--min-length {min_length}: {len(short)} series are shorter: "
                                  f"{names}{', ...' if len(short) > 5 else ''}")
    need = lookback + horizon
    ok = borders[:, 0] >= need
    if not ok.any():
        i = int(np.argmax(lengths))
        other = int(lengths[i] - borders[i, 0])
        raise DataFormatError(f"no series is long enough: the longest, {panel.ids[i]!r}, has "
                              f"{lengths[i]} rows, {other} of them for validation and test, leaving "
                              f"{borders[i, 0]} for training; a training window needs lookback + "
                              f"horizon = {need}, so a series needs at least {need + other} rows")
    return np.flatnonzero(ok), [panel.ids[i] for i in np.flatnonzero(~ok)]


SCALINGS = ("standard", "mean")


class SeriesScaler:
    """Per-series standardization ``(x - mean) / std``: ``mean``, ``std`` (S, C) fitted on each
    series' training rows (population std; a constant channel gets std 1). ``mode="mean"``
    divides by the series' mean level instead (no shift: positive series stay positive, as a
    multiplicative model in log space needs)."""

    def __init__(self, mean: np.ndarray | None = None, std: np.ndarray | None = None,
                 mode: str = "standard"):
        if mode not in SCALINGS:
            raise ConfigError(f"SeriesScaler: mode (--scaling) must be one of {SCALINGS}, got "
                              f"{mode!r}")
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)
        self.mode = mode

    def fit(self, panel: Panel, borders: np.ndarray) -> SeriesScaler:
        """Statistics of rows ``[0, borders[i, 0])`` of every series i."""
        ends = np.asarray(borders)[:, 0]
        if (ends < 1).any():
            i = int(np.argmax(ends < 1))
            raise ConfigError(f"SeriesScaler.fit: series {panel.ids[i]!r} has no training rows")
        starts = panel.offsets[:-1]
        series = np.repeat(np.arange(len(panel)), panel.lengths())  # (N,)
        train = np.arange(len(series)) - starts[series] < ends[series]  # (N,)
        series, values = series[train], panel.values[train]
        mean = np.stack([np.bincount(series, values[:, c], len(panel))
                         for c in range(values.shape[1])], axis=1) / ends[:, None]
        var = np.stack([np.bincount(series, (values[:, c] - mean[series, c]) ** 2, len(panel))
                        for c in range(values.shape[1])], axis=1) / ends[:, None]
        self.mean, std = mean, np.sqrt(var)
        self.std = np.where(std > 0, std, 1.0)
        if self.mode == "mean":  # x / |mean|: positive series stay positive (ratios to the level)
            self.std = np.where(np.abs(mean) > 0, np.abs(mean), 1.0)
            self.mean = np.zeros_like(mean)
        return self

    def transform(self, values: np.ndarray, series: np.ndarray,
                  channels: Sequence[int] | None = None) -> np.ndarray:
        """``values`` (B, ..., C') of series ``series`` (B,) scaled; ``channels`` (C',) picks the
        channels they hold (default all C)."""
        mean, std = self._stats(values, series, channels)
        return (values - mean) / std

    def inverse(self, values: np.ndarray, series: np.ndarray,
                channels: Sequence[int] | None = None) -> np.ndarray:
        """The inverse of :meth:`transform` (predictions back to the data's scale)."""
        mean, std = self._stats(values, series, channels)
        return values * std + mean

    def _stats(self, values: np.ndarray, series: np.ndarray, channels) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None:
            raise ConfigError("SeriesScaler: fit it before transforming")
        cols = slice(None) if channels is None else list(channels)
        shape = (len(series),) + (1,) * (values.ndim - 2) + (-1,)
        series = np.asarray(series)
        return self.mean[series][:, cols].reshape(shape), self.std[series][:, cols].reshape(shape)

    def to_config(self) -> dict:
        """JSON-ready statistics."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_config(cls, config: dict | str) -> SeriesScaler:
        config = json.loads(config) if isinstance(config, str) else config
        return cls(config["mean"], config["std"])
