"""The Jena climate series (Max Planck Institute for Biogeochemistry, 2009-2016) of the lecture's
temperature example: 420,551 rows at 10-minute steps, 14 numeric columns."""

from __future__ import annotations

from pathlib import Path

from ..data.csv import parse_timestamps, read_table
from ..data.download import fetch
from ..data.timeseries import Series

URL = "https://s3.amazonaws.com/keras-datasets/jena_climate_2009_2016.csv.zip"
DATE_COLUMN = "Date Time"
COLUMNS = ["p (mbar)", "T (degC)", "Tpot (K)", "Tdew (degC)", "rh (%)", "VPmax (mbar)",
           "VPact (mbar)", "VPdef (mbar)", "sh (g/kg)", "H2OC (mmol/mol)", "rho (g/m**3)",
           "wv (m/s)", "max. wv (m/s)", "wd (deg)"]
_DATE = r"(?P<d>\d\d)\.(?P<m>\d\d)\.(?P<Y>\d{4}) (?P<H>\d\d):(?P<M>\d\d):(?P<S>\d\d)"


def load(path: str | Path | None = None) -> Series:
    """The series: ``values`` (N, 14) float64 in the file's column order (column 1 is the
    temperature "T (degC)", the lecture's target), ``timestamps`` (N,) from dates like
    ``01.01.2009 00:10:00``.

    ``path``: the ``.csv`` or the ``.zip`` holding it; None downloads the Keras copy of the zip
    into the cache. That source publishes no checksum, so the download is not hash-checked.
    """
    source = Path(path) if path is not None else fetch(URL, None, Path(URL).name)
    table = read_table(source, numeric=COLUMNS, text=(DATE_COLUMN,))
    return Series(list(COLUMNS), table.values, parse_timestamps(table, DATE_COLUMN, _DATE))
