"""Shared test setup: every test starts from the same random state.

Property tests (hypothesis) draw the same examples on every run, so ``make test`` gives one
answer for one commit; ``RNNKIT_HYPOTHESIS=explore pytest`` draws fresh examples each run (how the
denormal bug in fit's messages was found) and keeps failures in .hypothesis/ to replay.
"""

import os

import numpy as np
import pytest
import torch
from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("RNNKIT_HYPOTHESIS", "repeatable"))


@pytest.fixture(autouse=True)
def _fixed_seeds():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def lstm_inference_on_native(monkeypatch):
    """auto's rule sends LSTM inference to native from H=129 (below it the compiled kernel's tiles
    win): pinned from H=1, so small layers in a test take the native path (one call for
    Bidirectional and Stacked, packed masks)."""
    from rnnkit.engine import registry

    monkeypatch.setitem(registry.NATIVE_FROM_UNITS, ("LSTMCell", "inference"), 1)


@pytest.fixture
def two_threads():
    """torch on two intra-op threads for the test, whatever the machine's default."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small generated files of the four CLI tasks: a dated series (forecast), labelled reviews
    (classify), a text (generate) and addition pairs (seq2seq)."""
    from rnnkit.tasks.seq2seq import addition_pairs

    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    t = np.arange(240)
    a = np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(240)
    with open(d / "series.csv", "w") as f:
        f.write("date,a,temp\n")
        for i in t:
            f.write(f"2020-01-{1 + i // 24:02d} {i % 24:02d}:00:00,{a[i]:.4f},{3 * a[i] + 10:.4f}\n")
    words = {"pos": ["good", "great", "love"], "neg": ["bad", "awful", "hate"]}
    with open(d / "reviews.csv", "w") as f:
        f.write("review,sentiment\n")
        for i in range(60):
            label = ("neg", "pos")[i % 2]
            f.write(" ".join(rng.choice(words[label] + ["the", "film"], 5)) + f",{label}\n")
    (d / "text.txt").write_text("the quick brown fox jumps over the lazy dog. " * 12)
    (d / "add.tsv").write_text("\n".join(f"{s}\t{t}" for s, t in addition_pairs(80, 1)))
    with open(d / "panel.csv", "w") as f:  # a long table: three series of different lengths
        f.write("unique_id,ds,y\n")
        for s in range(3):
            for i in range(60 + 4 * s):
                y = np.sin(2 * np.pi * i / 6) + s + 0.1 * rng.standard_normal()
                f.write(f"s{s},{i},{y:.4f}\n")
    return d


@pytest.fixture(scope="session")
def compiled_built():
    """The compiled kernel's extension built (or loaded from the cache) here, before a test starts
    subprocesses that train: the first build takes minutes, which a subprocess would otherwise
    spend inside its own timeout (twice over under torchrun, one rank waiting on the other's
    build lock)."""
    from rnnkit.engine import kernels

    kernels()["compiled"].ops()
