"""The user-written cells of Keras's RNN tests, written against rnnkit's Layer.

Source: keras-team/keras, keras/src/layers/rnn/rnn_test.py (OneStateRNNCell, TwoStatesRNNCell) and
keras/src/layers/rnn/dropout_rnn_cell_test.py (RNNCellWithDropout) at commit
3422977a5e38fb2f7709aaa9a08e47f0c43d0f60. Translated line by line: ``keras.src.layers.Layer`` ->
``rnnkit.layers.Layer``, ``ops.matmul`` -> ``torch.matmul``, Keras's SeedGenerator -> a
torch.Generator (rnnkit's DropoutRNNCell draws from ``seed_generator`` when a cell has one).
"""

import torch

from rnnkit import layers


class OneStateRNNCell(layers.Layer):
    def __init__(self, units, state_size=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = state_size if state_size else units

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units),
            initializer="ones",
            name="kernel",
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units),
            initializer="ones",
            name="recurrent_kernel",
        )

    def call(self, inputs, states):
        prev_output = states[0]
        h = torch.matmul(inputs, self.kernel)
        output = h + torch.matmul(prev_output, self.recurrent_kernel)
        return output, [output]


class TwoStatesRNNCell(layers.Layer):
    def __init__(self, units, state_size=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = state_size if state_size else [units, units]
        self.output_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units),
            initializer="ones",
            name="kernel",
        )
        self.recurrent_kernel_1 = self.add_weight(
            shape=(self.units, self.units),
            initializer="ones",
            name="recurrent_kernel_1",
        )
        self.recurrent_kernel_2 = self.add_weight(
            shape=(self.units, self.units),
            initializer="ones",
            name="recurrent_kernel_2",
        )

    def call(self, inputs, states):
        prev_1 = states[0]
        prev_2 = states[0]
        h = torch.matmul(inputs, self.kernel)
        output_1 = h + torch.matmul(prev_1, self.recurrent_kernel_1)
        output_2 = h + torch.matmul(prev_2, self.recurrent_kernel_2)
        output = output_1 + output_2
        return output, [output_1, output_2]


class RNNCellWithDropout(layers.Layer, layers.DropoutRNNCell):
    def __init__(
        self, units, dropout=0.5, recurrent_dropout=0.5, seed=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.units = units
        self.state_size = units
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units),
            initializer="ones",
            name="kernel",
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units),
            initializer="ones",
            name="recurrent_kernel",
        )

    def call(self, inputs, states, training=False):
        if training:
            dp_mask = self.get_dropout_mask(inputs)
            inputs = inputs * dp_mask
        prev_output = states[0]
        h = torch.matmul(inputs, self.kernel)
        if training:
            rdp_mask = self.get_recurrent_dropout_mask(prev_output)
            prev_output = prev_output * rdp_mask
        output = h + torch.matmul(prev_output, self.recurrent_kernel)
        return output, [output]
