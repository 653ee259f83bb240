"""RNN split by concern keeps its public surface: names, import paths, weights order."""

import numpy as np
import pytest
import torch

import rnnkit.layers.recurrent
from rnnkit import layers
from rnnkit.errors import ShapeError

B, T, I, H = 2, 5, 3, 4


def test_public_names_keep_their_import_paths():
    assert rnnkit.layers.recurrent.RNN is layers.RNN
    assert rnnkit.layers.recurrent.Readout is layers.Readout
    for name in ("step", "stepper", "reset_state", "reset_states", "get_initial_state",
                 "keras_cell", "get_weights", "set_weights"):
        assert hasattr(layers.LSTM(H), name), name


def test_weights_are_the_cells_then_readout_then_learned_initial_state():
    layer = layers.SimpleRNN(H, output_units=2, shortcut=True, learn_initial_state=True)
    layer(torch.randn(B, T, I))
    weights = layer.get_weights()
    readout = layer.readout
    want = [readout.weight_ho.detach().numpy().T, readout.bias_o.detach().numpy(),
            readout.weight_io.detach().numpy().T, layer.initial_state[0].detach().numpy()]
    assert len(weights) == 3 + len(want)
    for got, expected in zip(weights[3:], want):
        np.testing.assert_array_equal(got, expected)
    bad = weights[:3] + [weights[3].T] + weights[4:]
    with pytest.raises(ShapeError, match=rf"weight 3 expected shape \({H}, 2\), got \(2, {H}\)"):
        layer.set_weights(bad)
