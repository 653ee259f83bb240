"""A forecast run as one HTML page a person can browse: pick any of thousands of series, see its
history, actual future, forecast with interval and the baselines', sort the per-series metrics.

The page is one self-contained file (no network, no CDN): the data is embedded as JSON in a
``<script type="application/json">`` tag and drawn by a small hand-written script (``report.js``,
SVG, no library) with its stylesheet (``report.css``), both inlined. Not plotly.js: inlining it costs
about 3.5 MB per report and an optional dependency, for a few line charts. Only the picked series is
drawn and the metrics table shows one page of rows, so the page stays quick with 10,000 series.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataFormatError
from .storage import write_file

SIGNIFICANT = 7  # digits of the series' values kept in the page

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <p id="meta" class="muted"></p>
</header>
<main>
  <section id="summary-section" class="card">
    <h2>Panel summary</h2>
    <table id="summary" class="metrics"></table>
  </section>
  <section id="series-section" class="card">
    <div class="toolbar">
      <input id="filter" type="search" placeholder="Filter series by id" aria-label="filter series">
      <button id="prev" type="button" title="previous series (←)">&#8249; Prev</button>
      <select id="picker" aria-label="series"></select>
      <button id="next" type="button" title="next series (→)">Next &#8250;</button>
      <span id="position" class="muted"></span>
      <label class="zoom"><input id="zoom" type="checkbox"> zoom to the forecast</label>
    </div>
    <h2 id="series-title"></h2>
    <p id="series-metrics" class="muted"></p>
    <div id="legend" class="legend"></div>
    <div id="chart" class="chart"></div>
  </section>
  <section id="table-section" class="card">
    <h2>Metrics per series <span class="muted small">(click a column to sort, a row to pick)</span></h2>
    <table id="table" class="metrics sortable">
      <thead><tr id="table-head"></tr></thead>
      <tbody id="table-body"></tbody>
    </table>
    <div class="pager">
      <button id="page-prev" type="button">&#8249;</button>
      <span id="page-info" class="muted"></span>
      <button id="page-next" type="button">&#8250;</button>
    </div>
  </section>
  <section id="training-section" class="card">
    <h2>Training curves</h2>
    <div id="training-legend" class="legend"></div>
    <div id="training" class="chart"></div>
  </section>
  <section id="config-section" class="card">
    <details>
      <summary>Run options</summary>
      <pre id="config"></pre>
    </details>
  </section>
</main>
<script type="application/json" id="report-data">{data}</script>
<script>
{js}
</script>
</body>
</html>
"""


def write_report(path, data: Mapping[str, Any]) -> Path:
    """Write the HTML report of a forecast run to ``path`` (atomically: temporary file, rename).

    ``data`` (numbers may be Python or numpy, sequences lists or arrays; NaN and inf are shown as
    missing; an array of floats keeps SIGNIFICANT digits of its largest value)::

        {"title": str,
         "summary": {"model": {"smape": .., "mase": .., "owa": .., "mae": .., "mse": ..},
                     "baselines": {name: {same metrics}}},          # the panel, one row each
         "series": [{"id": str,
                     "history": {"t": [...], "y": [...]},          # the tail to show before the forecast
                     "actual": {"t": [...], "y": [...]},           # the true future, (H,)
                     "forecasts": {"model": {"y": [...], "lo": [...], "hi": [...]},   # lo/hi optional
                                   "<baseline>": {"y": [...]}},    # each (H,), at actual's t
                     "metrics": {"smape": .., "mase": .., ...}}],   # any metric names
         "interval": {"lower": 0.1, "upper": 0.9} | None,          # the quantiles of lo/hi
         "history": {"loss": [...], "val_loss": [...]},            # per epoch
         "config": {...}}                                          # the run's options, shown as JSON

    ``t`` holds integers or ISO timestamps (strings, or datetimes: written as ISO; without a zone
    they are shown as UTC). A forecast may carry its own ``"t"`` when it is not at actual's times.
    Every key but ``series`` may be left out. Returns ``path``.

    Raises DataFormatError naming the series and field when a ``t`` and its ``y`` (or a forecast
    and its times) differ in length; the file is then left as it was.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("series"), Sequence):
        raise DataFormatError("report data: expected a mapping with a 'series' list")
    plain = _plain(data)
    for index, series in enumerate(plain["series"]):
        _check_series(series, index)
    title = str(plain.get("title") or "Forecast report")
    page = _PAGE.format(title=html.escape(title), css=_asset("report.css"), js=_asset("report.js"),
                        data=embed_json(plain))
    path = write_file(path, page.encode("utf-8"))
    path.chmod(0o644)  # a page for people to read; the temporary file was made private (0600)
    return path


def embed_json(value: Any) -> str:
    """JSON safe inside an HTML ``<script>`` element: ``<``, ``>`` and ``&`` (only ever inside JSON
    strings) are written as \\u escapes, so no ``</script>`` or ``<!--`` in a series id can end it."""
    text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready Python: arrays to lists, numpy scalars to Python numbers, datetimes to
    ISO strings, non-finite floats to None (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list) and value:
        kinds = {type(x) for x in value}
        if kinds <= {str, int}:  # times: already plain
            return value
        if kinds == {float}:
            value = np.asarray(value)
    if isinstance(value, np.ndarray):
        if np.issubdtype(value.dtype, np.datetime64):
            return np.datetime_as_string(value).tolist()
        if np.issubdtype(value.dtype, np.floating):
            return _floats(value.astype(np.float64).ravel())
        return [_plain(x) for x in value.tolist()]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value))
    if hasattr(value, "isoformat"):  # datetime, date, pandas Timestamp
        return value.isoformat()
    if isinstance(value, Sequence) or hasattr(value, "tolist"):  # list, tuple, pandas Index/Series
        return [_plain(x) for x in (value.tolist() if hasattr(value, "tolist") else value)]
    return str(value)


def _floats(values: np.ndarray) -> list[float | None]:
    """(N,) floats with SIGNIFICANT digits of the largest: a third of the text of full precision
    (the page shows four digits), NaN and inf as None."""
    finite = np.isfinite(values)
    top = float(np.abs(values[finite]).max()) if finite.any() else 0.0
    digits = SIGNIFICANT - 1 - math.floor(math.log10(top)) if top > 0 else 0
    out = np.round(values, digits).tolist()
    return out if finite.all() else [x if ok else None for x, ok in zip(out, finite.tolist())]


def _check_series(series: Any, index: int) -> None:
    if not isinstance(series, dict) or "id" not in series:
        raise DataFormatError(f"report data: series[{index}] needs an 'id'")
    series["id"] = str(series["id"])
    where = f"report data: series {series['id']!r}"
    for part in ("history", "actual"):
        block = series.get(part) or {}
        if len(block.get("t") or []) != len(block.get("y") or []):
            raise DataFormatError(f"{where}: {part} has {len(block.get('t') or [])} times but "
                                  f"{len(block.get('y') or [])} values")
    times = len((series.get("actual") or {}).get("t") or [])
    for name, forecast in (series.get("forecasts") or {}).items():
        if not isinstance(forecast, dict):
            raise DataFormatError(f"{where}: forecast {name!r} should be a mapping like {{'y': [...]}}")
        n = len(forecast.get("t") or []) if "t" in forecast else times
        for key in ("y", "lo", "hi"):
            if key in forecast and len(forecast[key] or []) != n:
                raise DataFormatError(f"{where}: forecast {name!r} has {len(forecast[key] or [])} "
                                      f"values in {key!r} for {n} times")
