"""rnnkit.report without a browser: the page is one self-contained file, its embedded JSON reads
back as written, no series id can end the data's script element, and a failed write leaves the
previous report as it was."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from rnnkit.errors import DataFormatError
from rnnkit.report import embed_json, write_report


def _panel(ids=("a", "b")) -> dict:
    return {"title": "test <panel>",
            "summary": {"model": {"smape": 10.0, "mase": 0.9}, "baselines": {"naive": {"smape": 20.0}}},
            "series": [{"id": sid,
                        "history": {"t": [0, 1, 2], "y": [1.0, 2.0, 3.0]},
                        "actual": {"t": [3, 4], "y": [4.0, 5.0]},
                        "forecasts": {"model": {"y": [4.5, 5.5], "lo": [4.0, 5.0], "hi": [5.0, 6.0]},
                                      "naive": {"y": [3.0, 3.0]}},
                        "metrics": {"smape": 1.0 + i, "mase": 0.5}} for i, sid in enumerate(ids)],
            "interval": {"lower": 0.1, "upper": 0.9},
            "history": {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]},
            "config": {"model": "gru:8", "lr": 0.01}}


def _embedded(page: str):
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def test_the_page_loads_nothing_from_elsewhere(tmp_path):
    page = write_report(tmp_path / "report.html", _panel()).read_text(encoding="utf-8")
    assert re.findall(r"""(?:src|href|action)\s*=\s*["']?\s*(?:[a-z]+:)?//""", page, re.I) == []
    assert re.findall(r"@import|url\(|<link|<iframe|fetch\(|XMLHttpRequest", page, re.I) == []
    assert page.count("<script") == 2  # the data and the inlined script, nothing with a src
    assert page.count("<style>") == 1


def test_the_embedded_json_reads_back_as_written(tmp_path):
    data = _panel()
    page = write_report(tmp_path / "report.html", data).read_text(encoding="utf-8")
    assert _embedded(page) == data
    assert "<title>test &lt;panel&gt;</title>" in page


def test_numpy_arrays_timestamps_and_nan_become_plain_json(tmp_path):
    data = _panel(ids=("x",))
    hours = np.datetime64("2024-01-01T00:00") + np.arange(3) * np.timedelta64(1, "h")
    data["series"][0]["history"] = {"t": hours, "y": np.array([1.0, np.nan, np.inf], dtype=np.float32)}
    data["series"][0]["metrics"] = {"smape": np.float64(2.5), "mase": float("nan"), "n": np.int64(3)}
    series = _embedded(write_report(tmp_path / "r.html", data).read_text(encoding="utf-8"))["series"][0]
    assert series["history"] == {"t": ["2024-01-01T00:00", "2024-01-01T01:00", "2024-01-01T02:00"],
                                 "y": [1.0, None, None]}
    assert series["metrics"] == {"smape": 2.5, "mase": None, "n": 3}


def test_values_keep_seven_significant_digits_of_their_largest(tmp_path):
    data = _panel(ids=("x",))
    data["series"][0]["history"]["y"] = [123.456789123, 0.000123, -2.5]
    data["series"][0]["actual"]["y"] = np.array([1.23456789e9, 1.0])
    series = _embedded(write_report(tmp_path / "r.html", data).read_text(encoding="utf-8"))["series"][0]
    assert series["history"]["y"] == [123.4568, 0.0001, -2.5]
    assert series["actual"]["y"] == [1.234568e9, 0.0]


@pytest.mark.parametrize("sid", ["</script><script>alert(1)</script>", "<!--", "</SCRIPT >&amp;\u2028"])
def test_no_series_id_can_end_the_data_element(tmp_path, sid):
    page = write_report(tmp_path / "report.html", _panel(ids=(sid, "b"))).read_text(encoding="utf-8")
    assert page.count("<script") == 2 and page.lower().count("</script") == 2
    assert _embedded(page)["series"][0]["id"] == sid
    assert "<" not in embed_json({"id": sid}) and ">" not in embed_json({"id": sid})


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "report.html")


def test_a_failed_write_leaves_the_old_report_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    path.write_text("old report", encoding="utf-8")

    def refuse(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_report(path, _panel())
    assert path.read_text(encoding="utf-8") == "old report"
    assert _leftovers(tmp_path) == []


def test_a_series_whose_lengths_disagree_is_named_and_nothing_is_written(tmp_path):
    path = tmp_path / "report.html"
    path.write_text("old report", encoding="utf-8")
    data = _panel(ids=("a", "MT_7"))
    data["series"][1]["forecasts"]["model"]["hi"] = [1.0]
    with pytest.raises(DataFormatError, match=r"series 'MT_7'.*forecast 'model'.*'hi' for 2 times"):
        write_report(path, data)
    data = _panel()
    data["series"][0]["history"]["t"] = [0, 1]
    with pytest.raises(DataFormatError, match=r"series 'a': history has 2 times but 3 values"):
        write_report(path, data)
    data = _panel()
    data["series"][0]["forecasts"]["naive"] = [1.0, 2.0]
    with pytest.raises(DataFormatError, match=r"series 'a': forecast 'naive' should be a mapping"):
        write_report(path, data)
    with pytest.raises(DataFormatError, match="'series' list"):
        write_report(path, {"title": "no series"})
    assert path.read_text(encoding="utf-8") == "old report"
    assert _leftovers(tmp_path) == []


def test_the_report_is_readable_by_others(tmp_path):
    path = write_report(tmp_path / "report.html", _panel())
    assert path.stat().st_mode & 0o777 == 0o644
