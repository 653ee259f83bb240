"""ETTh1 on the real file, when ../shared/data holds it (skipped where absent): the protocol's
splits, and (slow) a short SegRNN run from the CLI that beats the last value."""

import json

import numpy as np
import pytest

from helpers import SHARED_DATA
from rnnkit.cli import main
from rnnkit.datasets import ett

ETTH1 = SHARED_DATA / "timeseries" / "ETTh1.csv"


def _require_file():
    if not ETTH1.exists():
        pytest.skip(f"real data absent: {ETTH1}")


def test_the_protocol_on_the_real_etth1():
    _require_file()
    splits = ett.load(ETTH1, standardize=True)
    assert splits.borders == (8640, 11520, 14400)
    train, val, test = ett.windows(splits, lookback=96, horizon=96, setting="M")
    assert [len(ds.anchors) for ds in (train, val, test)] == [8449, 2785, 2785]
    # the scaler saw the training rows only: they, not the rest, have mean 0 and std 1
    np.testing.assert_allclose(splits.train.values.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(splits.train.values.std(axis=0), 1.0, atol=1e-9)
    assert np.abs(splits.test.values.mean(axis=0)).max() > 0.1


@pytest.mark.slow
def test_segrnn_beats_the_last_value_on_etth1_from_the_cli(tmp_path):
    _require_file()
    out = tmp_path / "etth1"
    code = main(["train", "--task", "forecast", "--data", str(ETTH1), "--target", "OT",
                 "--features", "OT", "--split", "8640,2880,2880", "--lookback", "96",
                 "--horizon", "96", "--model", "segrnn:32", "--segment", "24", "--epochs", "3",
                 "--batch-size", "64", "--optimizer", "adam", "--learning-rate", "0.001",
                 "--threads", "1", "--out", str(out), "--quiet"])
    assert code == 0
    std = json.loads((out / "metrics.json").read_text())["standardized"]
    assert std["baselines"]["last_value"]["mse"] == pytest.approx(0.0693, abs=5e-4)  # 2785 windows
    assert std["model"]["mse"] < std["baselines"]["last_value"]["mse"]
