"""The plumbing of benchmarks/m4_neuralforecast.py that needs no neuralforecast: reading M4's wide
files, the long frame, the step numbering of the forecasts, and the M4 scores on hand-made numbers."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "m4_neuralforecast.py"


@pytest.fixture(scope="module")
def nfm():
    spec = importlib.util.spec_from_file_location("m4_neuralforecast", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # its dataclass looks its module up in sys.modules while the class is made
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_read_m4_wide_drops_the_padding(nfm, tmp_path):
    path = tmp_path / "Hourly-train.csv"
    path.write_text('"V1","V2","V3","V4"\n"H1",1.5,2,3\n"H2",4,5,\n')
    series = nfm.read_m4_wide(path)
    assert list(series) == ["H1", "H2"]
    np.testing.assert_array_equal(series["H1"], [1.5, 2.0, 3.0])
    np.testing.assert_array_equal(series["H2"], [4.0, 5.0])


def test_long_frame_numbers_steps_from_one(nfm):
    df = nfm.long_frame({"A": np.array([1.0, 2.0]), "B": np.array([3.0])})
    assert df.to_dict("list") == {"unique_id": ["A", "A", "B"], "ds": [1, 2, 1], "y": [1.0, 2.0, 3.0]}


def test_to_steps_counts_from_each_series_end(nfm):
    fc = pd.DataFrame({"unique_id": ["A", "A", "B"], "ds": [11, 12, 6], "LSTM": [1.0, 2.0, 3.0]})
    steps = nfm.to_steps(fc, {"A": 10, "B": 5}, "LSTM")
    assert steps.to_dict() == {("A", 1): 1.0, ("A", 2): 2.0, ("B", 1): 3.0}


def test_seasonal_naive_repeats_the_last_day(nfm):
    y = np.arange(60.0)
    fc = nfm.seasonal_naive({"A": y})
    np.testing.assert_array_equal(fc.loc["A"].to_numpy(), np.tile(y[-24:], 2))


def test_score_by_hand(nfm):
    # scale: |x[t] - x[t-24]| = 24 everywhere; error 2 on a level of 10: sMAPE 200 * 2 / 22, MASE 2 / 24
    train, test = {"A": np.arange(48.0)}, {"A": np.full(48, 10.0)}
    fc = pd.Series(12.0, index=pd.MultiIndex.from_product([["A"], range(1, 49)], names=["unique_id", "step"]))
    got = nfm.score(train, test, fc)
    smape, mase = 400 / 22, 2 / 24
    assert got["smape"] == pytest.approx(smape, rel=1e-12)
    assert got["mase"] == pytest.approx(mase, rel=1e-12)
    assert got["owa"] == pytest.approx(0.5 * (smape / 18.383 + mase / 2.395), rel=1e-12)


def test_score_refuses_missing_steps(nfm):
    fc = pd.Series(1.0, index=pd.MultiIndex.from_product([["A"], range(2, 50)], names=["unique_id", "step"]))
    with pytest.raises(ValueError, match="series A"):
        nfm.score({"A": np.arange(48.0)}, {"A": np.ones(48)}, fc)
