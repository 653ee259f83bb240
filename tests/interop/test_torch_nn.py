"""rnnkit layers to and from torch.nn.RNN/LSTM/GRU: round trips with equal outputs."""

import pytest
import torch

from rnnkit import layers
from rnnkit.errors import ConfigError
from rnnkit.interop import from_torch, to_torch


@pytest.mark.parametrize("module", [
    lambda: torch.nn.RNN(3, 5, batch_first=True, nonlinearity="relu"),
    lambda: torch.nn.LSTM(3, 5, batch_first=True),
    lambda: torch.nn.GRU(3, 5, batch_first=True),
    lambda: torch.nn.LSTM(3, 5, batch_first=True, bidirectional=True),
])
def test_from_torch_and_back(module):
    torch.manual_seed(0)
    m = module().double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    layer = from_torch(m, return_sequences=True)
    ref, _ = m(x)
    torch.testing.assert_close(layer(x), ref, atol=1e-10, rtol=0)
    back = to_torch(layer)
    torch.testing.assert_close(back(x)[0], ref, atol=1e-10, rtol=0)


def test_to_torch_refuses_what_torch_cannot_run():
    layer = layers.LSTM(4, peephole=True)
    layer(torch.randn(1, 2, 3))
    with pytest.raises(ConfigError, match="no counterpart"):
        to_torch(layer)
    with pytest.raises(ConfigError, match="one layer at a time"):
        from_torch(torch.nn.GRU(3, 4, num_layers=2))
