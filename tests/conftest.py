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
