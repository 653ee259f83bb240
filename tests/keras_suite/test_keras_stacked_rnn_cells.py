"""Keras 3's stacked-cell tests (RNN([cells]), StackedRNNCells), run against rnnkit.

Source: keras-team/keras, keras/src/layers/rnn/stacked_rnn_cells_test.py at commit
3422977a5e38fb2f7709aaa9a08e47f0c43d0f60 (keras_harness.KERAS_COMMIT). Inputs, arguments, expected
arrays and tolerances are Keras's; the user-written cells are in keras_cells.py, and ``layers`` is
rnnkit's. Each sub-case of a Keras test method (one layer checked) is one pytest case. The seed
generator counts of test_basics are Keras-internal and left out; see README.md here.
"""

import numpy as np
import pytest
from keras_cells import OneStateRNNCell, TwoStatesRNNCell
from keras_harness import assert_all_close, run_layer_test

from rnnkit import layers


@pytest.mark.parametrize("cells, return_sequences, expected_shape, trainable, custom", [
    (lambda: [OneStateRNNCell(3), OneStateRNNCell(4), OneStateRNNCell(5)], False, (2, 5), 6,
     {"OneStateRNNCell": OneStateRNNCell}),
    (lambda: [OneStateRNNCell(3), OneStateRNNCell(4), OneStateRNNCell(5)], True, (2, 3, 5), 6,
     {"OneStateRNNCell": OneStateRNNCell}),
    (lambda: [TwoStatesRNNCell(3), TwoStatesRNNCell(4), TwoStatesRNNCell(5)], False, (2, 5), 9,
     {"TwoStatesRNNCell": TwoStatesRNNCell}),
    (lambda: [TwoStatesRNNCell(3), TwoStatesRNNCell(4), TwoStatesRNNCell(5)], True, (2, 3, 5), 9,
     {"TwoStatesRNNCell": TwoStatesRNNCell}),
    (lambda: [layers.SimpleRNNCell(n, dropout=0.1, recurrent_dropout=0.1) for n in (3, 4, 5)],
     True, (2, 3, 5), 9, None),
    (lambda: [layers.GRUCell(n, dropout=0.1, recurrent_dropout=0.1) for n in (3, 4, 5)],
     True, (2, 3, 5), 9, None),
    (lambda: [layers.LSTMCell(n, dropout=0.1, recurrent_dropout=0.1) for n in (3, 4, 5)],
     True, (2, 3, 5), 9, None),
], ids=["one_state", "one_state_sequences", "two_states", "two_states_sequences",
        "simple_rnn_cells", "gru_cells", "lstm_cells"])
def test_basics(cells, return_sequences, expected_shape, trainable, custom):
    init_kwargs = {"cell": cells()}
    if return_sequences:
        init_kwargs["return_sequences"] = True
    run_layer_test(
        layers.RNN,
        init_kwargs=init_kwargs,
        input_shape=(2, 3, 4),
        expected_output_shape=expected_shape,
        expected_num_trainable_weights=trainable,
        expected_num_non_trainable_weights=0,
        custom_objects=custom,
    )


def _sequence():
    return np.arange(24).reshape((2, 3, 4)).astype("float32")


def test_correctness_single_state_stack_last():
    layer = layers.RNN([OneStateRNNCell(3), OneStateRNNCell(2)])
    output = layer(_sequence())
    assert_all_close(output, np.array([[786.0, 786.0], [4386.0, 4386.0]]))


def test_correctness_single_state_stack_sequences():
    layer = layers.RNN([OneStateRNNCell(3), OneStateRNNCell(2)], return_sequences=True)
    output = layer(_sequence())
    assert_all_close(output, np.array([
        [[18.0, 18.0], [156.0, 156.0], [786.0, 786.0]],
        [[162.0, 162.0], [1020.0, 1020.0], [4386.0, 4386.0]],
    ]))


def test_correctness_single_state_stack_return_state():
    layer = layers.RNN([OneStateRNNCell(3), OneStateRNNCell(2)], return_state=True)
    output, state_1, state_2 = layer(_sequence())
    assert_all_close(output, np.array([[786.0, 786.0], [4386.0, 4386.0]]))
    assert_all_close(state_1, np.array([[158.0, 158.0, 158.0], [782.0, 782.0, 782.0]]))
    assert_all_close(state_2, np.array([[786.0, 786.0], [4386.0, 4386.0]]))


def test_correctness_single_state_stack_sequences_state():
    layer = layers.RNN([OneStateRNNCell(3), OneStateRNNCell(2)], return_sequences=True,
                       return_state=True)
    output, state_1, state_2 = layer(_sequence())
    assert_all_close(output, np.array([
        [[18.0, 18.0], [156.0, 156.0], [786.0, 786.0]],
        [[162.0, 162.0], [1020.0, 1020.0], [4386.0, 4386.0]],
    ]))
    assert_all_close(state_1, np.array([[158.0, 158.0, 158.0], [782.0, 782.0, 782.0]]))
    assert_all_close(state_2, np.array([[786.0, 786.0], [4386.0, 4386.0]]))


def test_correctness_two_states_stack_last():
    layer = layers.RNN([TwoStatesRNNCell(3), TwoStatesRNNCell(2)])
    output = layer(_sequence())
    assert_all_close(output, np.array([[3144.0, 3144.0], [17544.0, 17544.0]]))


def test_correctness_two_states_stack_sequences():
    layer = layers.RNN([TwoStatesRNNCell(3), TwoStatesRNNCell(2)], return_sequences=True)
    output = layer(_sequence())
    assert_all_close(output, np.array([
        [[72.0, 72.0], [624.0, 624.0], [3144.0, 3144.0]],
        [[648.0, 648.0], [4080.0, 4080.0], [17544.0, 17544.0]],
    ]))


def test_correctness_two_states_stack_return_state():
    layer = layers.RNN([TwoStatesRNNCell(3), TwoStatesRNNCell(2)], return_state=True)
    output, state_1, state_2 = layer(_sequence())
    assert_all_close(output, np.array([[3144.0, 3144.0], [17544.0, 17544.0]]))
    assert_all_close(state_1[0], np.array([[158.0, 158.0, 158.0], [782.0, 782.0, 782.0]]))
    assert_all_close(state_1[1], np.array([[158.0, 158.0, 158.0], [782.0, 782.0, 782.0]]))
    assert_all_close(state_2[0], np.array([[1572.0, 1572.0], [8772.0, 8772.0]]))
    assert_all_close(state_2[1], np.array([[1572.0, 1572.0], [8772.0, 8772.0]]))


def test_statefullness_single_state_stack():
    layer = layers.RNN([OneStateRNNCell(3), OneStateRNNCell(2)], stateful=True)
    layer(_sequence())
    output = layer(_sequence())
    assert_all_close(output, np.array([[34092.0, 34092.0], [173196.0, 173196.0]]))


def test_statefullness_two_states_stack():
    layer = layers.RNN([TwoStatesRNNCell(3), TwoStatesRNNCell(2)], stateful=True)
    layer(_sequence())
    output = layer(_sequence())
    assert_all_close(output, np.array([[136368.0, 136368.0], [692784.0, 692784.0]]))


def test_return_state_stacked_lstm_cell():
    layer = layers.RNN([layers.LSTMCell(10), layers.LSTMCell(10)], return_state=True)
    out = layer(np.zeros((2, 3, 5)))
    assert len(out) == 3
    assert tuple(out[0].shape) == (2, 10)
    assert tuple(out[1][0].shape) == (2, 10)
    assert tuple(out[1][1].shape) == (2, 10)
    assert tuple(out[2][0].shape) == (2, 10)
    assert tuple(out[2][1].shape) == (2, 10)

    shape = layer.compute_output_shape((2, 3, 5))
    assert len(shape) == 3
    assert tuple(shape[0]) == (2, 10)
    assert tuple(shape[1][0]) == (2, 10)
    assert tuple(shape[1][1]) == (2, 10)
    assert tuple(shape[2][0]) == (2, 10)
    assert tuple(shape[2][1]) == (2, 10)


def test_stacked_lstm_cell_mask():
    sequence = np.ones((2, 3, 4))
    mask = np.array([[True, True, True], [True, True, False]])
    cell_kwargs = dict(units=1, kernel_initializer="ones", recurrent_initializer="ones")
    rnn_cells = [layers.LSTMCell(**cell_kwargs) for _ in range(2)]
    stacked_rnn = layers.RNN(rnn_cells)
    output = stacked_rnn(sequence, mask=mask)
    assert_all_close(output, np.array([[0.7793], [0.5998]]), atol=1e-4)
