"""ESRNN: shapes, the seasonal naive start, config round trip, gradients, a tiny fit, errors."""

import json
import math

import pytest
import torch

from rnnkit.errors import ConfigError, ShapeError
from rnnkit.layers import ESRNN, GRU, LSTM, Dense
from rnnkit.tasks import specs


def seasonal_panel(series: int, steps: int, season: int, seed: int = 0) -> torch.Tensor:
    """(series, steps) positive series: level · trend · (1 + a·sin) · noise, each its own
    level, trend, amplitude and phase — seasonal naive misses the trend, last value the season."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(steps, dtype=torch.float32)
    level = 1 + 4 * torch.rand(series, 1, generator=g)
    trend = torch.exp(0.004 * torch.randn(series, 1, generator=g) * t)
    amp = 0.2 + 0.4 * torch.rand(series, 1, generator=g)
    phase = 2 * math.pi * torch.rand(series, 1, generator=g)
    noise = 1 + 0.02 * torch.randn(series, steps, generator=g)
    return level * trend * (1 + amp * torch.sin(2 * math.pi * t / season + phase)) * noise


def test_shapes_targets_and_quantiles():
    x = torch.rand(5, 48, 3) + 0.5
    assert ESRNN(GRU(8), horizon=10, season=12, dilations=(1, 2))(x).shape == (5, 10, 3)
    layer = ESRNN(LSTM(8), horizon=10, season=12, targets=[2, 0], quantiles=[0.1, 0.5, 0.9])
    assert layer(x).shape == (5, 10, 2, 3)
    assert layer.compute_output_shape((None, 48, 3)) == (None, 10, 2, 3)


@pytest.mark.parametrize("scale", ["log", "level"])
def test_the_untrained_layer_is_the_seasonal_naive_forecast(scale):
    x = torch.rand(4, 36, 2) + 0.5 if scale == "log" else torch.randn(4, 36, 2)
    layer = ESRNN(LSTM(6), horizon=15, season=6, dilations=(1, 3), scale=scale, dropout=0.5)
    naive = x[:, -6:].repeat(1, 3, 1)[:, :15]  # the last season, repeated, cut to H
    torch.testing.assert_close(layer(x), naive, rtol=1e-5, atol=1e-5)
    layer.train()  # dropout before a zero head changes nothing either
    torch.testing.assert_close(layer(x), naive, rtol=1e-5, atol=1e-5)


def test_the_dilations_count_segments_and_reach_the_engine():
    layer = ESRNN(LSTM(4), horizon=8, season=4, dilations=(1, 2, 4))
    layer(torch.rand(2, 32, 1) + 1)
    assert [level.dilation for level in layer.rnn.levels] == [1, 2, 4]
    assert all(level.last_kernel is not None for level in layer.rnn.levels)


def test_get_config_round_trip_gives_the_same_layer_and_forecast():
    layer = ESRNN(GRU(5), horizon=6, season=4, dilations=(1, 2), targets=[1], scale="level",
                  skip=False, dropout=0.1, quantiles=[0.25, 0.75], name="esrnn_rt")
    x = torch.randn(3, 16, 2)
    layer(x)
    again = ESRNN.from_config(json.loads(json.dumps(layer.get_config())))
    assert json.dumps(again.get_config()) == json.dumps(layer.get_config())
    again(x)
    again.load_state_dict(layer.state_dict())
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
        again.load_state_dict(layer.state_dict())
        torch.testing.assert_close(again(x), layer(x))


def test_gradients_are_finite_and_reach_every_parameter():
    torch.manual_seed(0)
    layer = ESRNN(LSTM(6), horizon=12, season=6, dilations=(1, 2))
    x = seasonal_panel(8, 36 + 12, 6)[:, :, None]
    loss = (torch.log(layer(x[:, :36])) - torch.log(x[:, 36:])).abs().mean()
    loss.backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert layer.head.weight.grad.abs().sum() > 0 and layer.linear.weight.grad.abs().sum() > 0
    # the head starts at zero, so the recurrent weights get gradient only after one step
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    opt.step()
    opt.zero_grad()
    (torch.log(layer(x[:, :36])) - torch.log(x[:, 36:])).abs().mean().backward()
    recurrent = layer.rnn.levels[0].cell.weight_hh.grad
    assert torch.isfinite(recurrent).all() and recurrent.abs().sum() > 0


@pytest.mark.slow  # 150 Adam steps: about 20 s on the shared machine
def test_a_tiny_fit_beats_last_value_and_seasonal_naive_on_a_seasonal_panel():
    torch.manual_seed(0)
    season, lookback, horizon = 6, 36, 12
    panel = seasonal_panel(64, 200, season)  # (64, 200)
    train, test = panel[:, :-horizon], panel[:, -lookback - horizon:]
    layer = ESRNN(GRU(16), horizon, season, dilations=(1, 2))
    layer.ensure_built((None, lookback, 1))
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    layer.train()
    g = torch.Generator().manual_seed(1)
    for _ in range(150):
        ends = torch.randint(lookback, train.shape[1] - horizon + 1, (64,), generator=g)
        steps = ends[:, None] + torch.arange(-lookback, horizon)
        w = train.gather(1, steps)  # (64, L+H)
        y = layer(w[:, :lookback, None])[:, :, 0]
        loss = (torch.log(y) - torch.log(w[:, lookback:])).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    layer.eval()
    x, actual = test[:, :lookback], test[:, lookback:]
    with torch.no_grad():
        mae = (layer(x[:, :, None])[:, :, 0] - actual).abs().mean()
    last = (x[:, -1:] - actual).abs().mean()
    naive = (x[:, -season:].repeat(1, 2) - actual).abs().mean()
    assert mae < 0.7 * naive and mae < 0.5 * last


def test_mistakes_name_the_option():
    with pytest.raises(ConfigError, match="lookback 30 must be a multiple of the season 24"):
        ESRNN(LSTM(4), horizon=4)(torch.rand(2, 30, 1))
    with pytest.raises(ConfigError, match="recurrent must be a SimpleRNN, LSTM or GRU"):
        ESRNN(Dense(4), horizon=4)
    with pytest.raises(ConfigError, match="scale must be one of"):
        ESRNN(LSTM(4), horizon=4, scale="exp")
    with pytest.raises(ShapeError, match=r"expected windows \(B, L, C\) with known L and C"):
        ESRNN(LSTM(4), horizon=4, season=2).ensure_built((None, None, 1))


def test_the_esrnn_spec_builds_the_layer():
    layer = specs.forecaster("esrnn-lstm:8", horizon=12, segment=6)
    assert isinstance(layer, ESRNN) and layer.season == 6 and layer.units == 8
    assert layer.scale == "level"  # the pipeline's windows are standardised: any sign
    x = torch.randn(2, 42, 3)
    assert layer(x).shape == (2, 12, 3)
    assert isinstance(specs.forecaster("esrnn:8", horizon=4).rnn.levels[0], GRU)
