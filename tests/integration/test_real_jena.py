"""The lecture's Jena recipe on the real file, when ../shared/data holds it (slow; skipped where absent)."""

import json

import pytest

from helpers import SHARED_DATA
from rnnkit.cli import main

DATA = SHARED_DATA
CANDIDATES = [DATA / "jena_climate_2009_2016.csv", DATA / "timeseries" / "jena_climate_2009_2016.csv"]
JENA = next((p for p in CANDIDATES if p.exists()), CANDIDATES[0])


@pytest.mark.slow
def test_lecture_recipe_on_the_real_jena_file(tmp_path):
    if not JENA.exists():
        pytest.skip(f"real data absent: {JENA} (see ../shared/data/README.md: not obtainable here)")
    out = tmp_path / "jena"
    code = main(["train", "--task", "forecast", "--data", str(JENA), "--target", "T (degC)",
                 "--lookback", "1440", "--step", "6", "--delay", "144", "--horizon", "1",
                 "--split", "0.476,0.238,0.286", "--model", "gru:32", "--epochs", "20",
                 "--batch-size", "128", "--season", "144", "--out", str(out), "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # the book: common-sense baseline 2.57 °C, GRU(32) 0.265 × std ≈ 2.35 °C
    assert metrics["baselines"]["last_value"]["mae"] == pytest.approx(2.57, abs=0.3)
    assert metrics["model"]["mae"] < metrics["baselines"]["last_value"]["mae"]
