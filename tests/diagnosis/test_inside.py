"""Seeing inside: gradient through time against an independent loop, the lecture's vanishing
gradient (SimpleRNN) against the carried gradient (LSTM, GRU), gate statistics against the
gate equations, hidden states, and the plots."""

import sys

import numpy as np
import pytest
import torch

from rnnkit import layers
from rnnkit.diagnosis import (
    gate_statistics,
    gate_values,
    gradient_through_time,
    hidden_states,
    plot_gate_statistics,
    plot_gradient_through_time,
    plot_hidden_states,
    plot_history,
    read_history,
)
from rnnkit.errors import ConfigError, DataFormatError
from rnnkit.models import Sequential

PNG = b"\x89PNG\r\n\x1a\n"


def _built(layer, features=3):
    layer(torch.zeros(1, 2, features))
    return layer


def _manual_simple_grads(cell, x, y):
    """‖∂L/∂h_t‖ from a loop written here: h_t = tanh(W x_t + U h_{t-1} + b), L = mse(h_T, y)."""
    h = torch.zeros(x.shape[0], cell.hidden_size)
    hs = []
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ cell.weight_ih.t() + h @ cell.weight_hh.t() + cell.bias)
        h.retain_grad()
        hs.append(h)
    ((h - y) ** 2).mean().backward()
    return np.array([float(h.grad.norm()) for h in hs])


def test_gradient_through_time_matches_an_independent_loop():
    layer = _built(layers.SimpleRNN(5))
    x, y = torch.randn(4, 7, 3), torch.randn(4, 5)
    norms = gradient_through_time(layer, x, y)
    assert all(p.grad is None for p in layer.parameters())
    assert layer.backend == "auto" and "step" not in vars(layer.cell)
    assert norms.shape == (7,)
    np.testing.assert_allclose(norms, _manual_simple_grads(layer.cell, x, y), rtol=1e-5)


def test_gradient_through_time_through_a_compiled_model():
    model = Sequential([layers.Dense(3), layers.SimpleRNN(5), layers.Dense(1)])
    model.compile("rmsprop", "mse")
    x, y = torch.randn(4, 6, 2), torch.randn(4, 1)
    norms = gradient_through_time(model, x, y)
    dense_in, rnn, head = model.layers
    h = torch.zeros(4, 5)
    hs = []
    xin = dense_in(x)
    for t in range(6):
        h = torch.tanh(xin[:, t] @ rnn.cell.weight_ih.t() + h @ rnn.cell.weight_hh.t() + rnn.cell.bias)
        h.retain_grad()
        hs.append(h)
    ((head(h) - y) ** 2).mean().backward()
    np.testing.assert_allclose(norms, [float(h.grad.norm()) for h in hs], rtol=1e-5)


def test_go_backwards_and_dilation_map_to_time_order():
    forward = _built(layers.GRU(4))
    backward = _built(layers.GRU(4, go_backwards=True))
    backward.set_weights(forward.get_weights())
    x, y = torch.randn(3, 8, 3), torch.randn(3, 4)
    np.testing.assert_allclose(gradient_through_time(backward, x, y),
                               gradient_through_time(forward, x.flip(1), y)[::-1], rtol=1e-5)
    dilated = _built(layers.GRU(4, dilation=2))
    dilated.set_weights(forward.get_weights())
    norms = gradient_through_time(dilated, x, y)
    # the last step (t = 7) belongs to the odd sub-sequence; the even one never reaches the loss
    np.testing.assert_allclose(norms[1::2], gradient_through_time(forward, x[:, 1::2], y),
                               rtol=1e-5)
    assert np.all(norms[0::2] == 0)


def _carrying(kind):
    if kind == "SimpleRNN":  # small recurrent weights: ‖∂h_t/∂h_{t-1}‖ <= 0.5
        return _built(layers.SimpleRNN(16, recurrent_initializer=lambda w:
                                       torch.nn.init.orthogonal_(w, 0.5)))
    layer = _built(layers.LSTM(16) if kind == "LSTM" else layers.GRU(16))
    with torch.no_grad():  # open the gate that carries: LSTM forget gate f, GRU update gate z
        layer.cell.bias[16:32] = 5.0
    return layer


@pytest.mark.parametrize("seed", [0, 1])
def test_simple_rnn_gradient_vanishes_where_lstm_and_gru_carry_it(seed):
    torch.manual_seed(seed)
    x, y = torch.randn(8, 50, 3), torch.randn(8, 16)
    ratio = {}
    for kind in ("SimpleRNN", "LSTM", "GRU"):
        norms = gradient_through_time(_carrying(kind), x, y)
        ratio[kind] = norms[0] / norms[-1]
    assert ratio["SimpleRNN"] < 1e-12, ratio
    assert ratio["LSTM"] > 1e-2 and ratio["GRU"] > 1e-2, ratio


def _manual_lstm_gates(cell, x):
    hs = cell.hidden_size
    h = c = torch.zeros(x.shape[0], hs)
    out = {"i": [], "f": [], "o": []}
    for t in range(x.shape[1]):
        z = x[:, t] @ cell.weight_ih.t() + h @ cell.weight_hh.t() + cell.bias
        i, f, g, o = torch.sigmoid(z[:, :hs]), torch.sigmoid(z[:, hs:2 * hs]), \
            torch.tanh(z[:, 2 * hs:3 * hs]), torch.sigmoid(z[:, 3 * hs:])
        c = f * c + i * g
        h = o * torch.tanh(c)
        for k, v in (("i", i), ("f", f), ("o", o)):
            out[k].append(v)
    return {k: torch.stack(v, 1).detach().numpy() for k, v in out.items()}


def test_lstm_gates_match_the_equations():
    layer = _built(layers.LSTM(4))
    x = torch.randn(3, 9, 3)
    got = gate_values(layer, x)
    want = _manual_lstm_gates(layer.cell, x)
    assert sorted(got) == ["f", "i", "o"]
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_gru_update_gate_matches_the_equation():
    layer = _built(layers.GRU(4))
    x = torch.randn(2, 5, 3)
    got = gate_values(layer, x)
    cell, hs = layer.cell, 4
    h = torch.zeros(2, hs)
    zs = []
    for t in range(5):
        gx = x[:, t] @ cell.weight_ih.t() + cell.bias
        gh = h @ cell.weight_hh.t() + cell.bias_hh
        r = torch.sigmoid(gx[:, :hs] + gh[:, :hs])
        z = torch.sigmoid(gx[:, hs:2 * hs] + gh[:, hs:2 * hs])
        n = torch.tanh(gx[:, 2 * hs:] + r * gh[:, 2 * hs:])
        h = (1 - z) * n + z * h
        zs.append(z)
    np.testing.assert_allclose(got["z"], torch.stack(zs, 1).detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_gate_saturation_fractions():
    layer = _built(layers.LSTM(4))
    with torch.no_grad():
        layer.cell.bias[4:8] = 20.0  # forget gate always open
        layer.cell.bias[12:16] = -20.0  # output gate always shut
    stats = gate_statistics(layer, torch.randn(2, 6, 3))
    np.testing.assert_array_equal(stats["f"]["saturated_high"], np.ones(6))
    np.testing.assert_array_equal(stats["o"]["saturated_low"], np.ones(6))
    np.testing.assert_array_equal(stats["o"]["saturated"], np.ones(6))
    assert stats["i"]["mean"].shape == (6,)


def test_gate_statistics_refuses_a_layer_without_gates():
    with pytest.raises(ConfigError, match="has no gates; gate statistics need an LSTM or GRU"):
        gate_statistics(_built(layers.SimpleRNN(3)), torch.randn(1, 4, 3))


def test_hidden_states_equal_the_returned_sequence():
    model = Sequential([layers.Dense(3), layers.LSTM(4, return_sequences=True)])
    x = torch.randn(2, 5, 2)
    model.eval()
    want = model(x).detach().numpy()
    np.testing.assert_allclose(hidden_states(model.layers[1], x, model=model), want, rtol=1e-6,
                               atol=1e-6)  # float32: two kernels, summation orders differ


def test_plots_write_png_files(tmp_path):
    layer = _built(layers.GRU(4))
    x = torch.randn(2, 6, 3)
    norms = gradient_through_time(layer, x, torch.randn(2, 4))
    paths = [
        plot_gradient_through_time({"GRU": norms, "zeros": np.zeros(6)}, tmp_path / "g.png"),
        plot_gate_statistics(gate_statistics(layer, x), tmp_path / "s.png"),
        plot_hidden_states(hidden_states(layer, x), tmp_path / "h.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == PNG


def test_history_from_fit_and_from_csv(tmp_path):
    model = Sequential([layers.SimpleRNN(3), layers.Dense(1)])
    model.compile("rmsprop", "mse", metrics=["mae"])
    x, y = np.random.rand(16, 4, 2).astype(np.float32), np.random.rand(16, 1).astype(np.float32)
    history = model.fit(x, y, epochs=2, validation_split=0.25, verbose=0)
    assert plot_history(history, tmp_path / "h.png").read_bytes()[:8] == PNG
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,loss,val_loss\n0,1.5,1.7\n1,0.5,0.9\n")
    assert read_history(csv) == {"loss": [1.5, 0.5], "val_loss": [1.7, 0.9]}
    assert plot_history(csv, tmp_path / "c.png").read_bytes()[:8] == PNG
    csv.write_text("epoch,loss\n0,1.5\n1,oops\n")
    with pytest.raises(DataFormatError, match="line 3, column 'loss': expected a number, got 'oops'"):
        read_history(csv)


def test_missing_matplotlib_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"needs the optional package 'matplotlib'.*"
                                          r"pip install 'rnnkit\[plots\]'"):
        plot_hidden_states(np.zeros((3, 2)), tmp_path / "h.png")
