"""The one container of weights and shapes: Stacked, DilatedRNN and StackedRNNCells."""

import numpy as np
import pytest
import torch

from rnnkit import layers
from rnnkit.errors import ShapeError
from rnnkit.layers.keras_weights import params_from_keras, params_to_keras

B, T, I, H = 3, 9, 2, 4


def test_dilated_rnn_weights_are_its_levels_keras_arrays_then_its_convolution():
    def make():
        return layers.DilatedRNN(layers.GRU(H), dilations=(1, 3), final_conv=True,
                                 return_sequences=True)

    net, other = make(), make()
    x = torch.randn(B, T, I)
    net(x), other(x)
    weights = net.get_weights()
    levels = [w for level in net.levels for w in level.get_weights()]
    assert len(weights) == len(levels) + 2
    for got, want in zip(weights, levels):
        np.testing.assert_array_equal(got, want)
    kernel = net.conv_weight.detach().permute(2, 1, 0).numpy()  # Keras Conv1D: (w, C_in, C_out)
    assert weights[-2].shape == (3, H, H)
    np.testing.assert_array_equal(weights[-2], kernel)
    np.testing.assert_array_equal(weights[-1], net.conv_bias.detach().numpy())
    other.set_weights(weights)
    torch.testing.assert_close(other(x), net(x), rtol=0, atol=0)
    with pytest.raises(ShapeError, match=f"{other.name}: set_weights expected {len(weights)} "
                                         f"arrays, got {len(weights) - 1}"):
        other.set_weights(weights[:-1])


@pytest.mark.parametrize("make, shape", [
    (lambda: layers.Stacked([layers.LSTM(H, return_sequences=True), layers.GRU(3)]), (B, T, I)),
    (lambda: layers.StackedRNNCells([layers.LSTMCell(H), layers.GRUCell(3)]), (B, I)),
])
def test_stacks_set_their_parts_weights_in_order_and_refuse_one_too_many(make, shape):
    stack, other = make(), make()
    stack.build(shape), other.build(shape)
    weights = stack.get_weights()
    assert len(weights) == sum(len(part.get_weights()) for part in stack.parts()) == 6
    other.set_weights(weights)
    for got, want in zip(other.get_weights(), weights):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ShapeError, match=f"expected {len(weights)} arrays, got {len(weights) + 1}"):
        other.set_weights(weights + [np.zeros(3, "float32")])


def test_stacked_rnn_cells_chain_step_shapes():
    cells = layers.StackedRNNCells([layers.LSTMCell(H), layers.GRUCell(5)])
    assert cells.compute_output_shape((B, I)) == (B, 5)
    cells.build((B, I))
    assert [c.cell.input_size for c in cells.cells] == [I, H]


def test_stacked_and_dilated_shapes_chain_their_layers():
    stacked = layers.Stacked([layers.LSTM(H, return_sequences=True),
                              layers.GRU(3, return_state=True)])
    assert stacked.compute_output_shape((B, T, I)) == [(B, 3), (B, 3)]
    dilated = layers.DilatedRNN(layers.SimpleRNN(H), dilations=(1, 2))
    assert dilated.compute_output_shape((B, T, I)) == (B, H)
    assert dilated(torch.randn(B, T, I)).shape == (B, H)


def test_params_keras_layout_reverses_the_axes_and_names_a_wrong_shape():
    matrix, vector = torch.nn.Parameter(torch.randn(4, 2)), torch.nn.Parameter(torch.randn(4))
    arrays = params_to_keras([matrix, vector])
    np.testing.assert_array_equal(arrays[0], matrix.detach().numpy().T)
    np.testing.assert_array_equal(arrays[1], vector.detach().numpy())
    params_from_keras([matrix, vector], [np.ones((2, 4), "float32"), np.zeros(4, "float32")], "here")
    assert torch.equal(matrix, torch.ones(4, 2)) and torch.equal(vector, torch.zeros(4))
    with pytest.raises(ShapeError, match=r"here: weight 3 expected shape \(2, 4\), got \(4, 2\)"):
        params_from_keras([matrix], [np.ones((4, 2))], "here", offset=3)
