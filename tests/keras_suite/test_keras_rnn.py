"""Keras 3's RNN(cell) tests, run against rnnkit.

Source: keras-team/keras, keras/src/layers/rnn/rnn_test.py at commit
3422977a5e38fb2f7709aaa9a08e47f0c43d0f60 (keras_harness.KERAS_COMMIT). Inputs, arguments, expected
arrays and tolerances are Keras's; the user-written cells are in keras_cells.py, and ``layers`` is
rnnkit's. Each sub-case of a Keras test method (one layer checked) is one pytest case.
test_stateful_batch_size_mismatch_raises calls the layer itself where Keras wraps it in a
Functional model on a symbolic Input; see README.md here.
"""

import numpy as np
import pytest
import torch
from keras_cells import OneStateRNNCell, TwoStatesRNNCell
from keras_harness import assert_all_close, run_class_serialization_test, run_layer_test

from rnnkit import layers


@pytest.mark.parametrize("init_kwargs, expected_shape, trainable", [
    (lambda: {"cell": OneStateRNNCell(5, state_size=5)}, (3, 5), 2),
    (lambda: {"cell": OneStateRNNCell(5, state_size=[5])}, (3, 5), 2),
    (lambda: {"cell": OneStateRNNCell(5, state_size=(5,))}, (3, 5), 2),
    (lambda: {"cell": OneStateRNNCell(5), "return_sequences": True}, (3, 2, 5), 2),
    (lambda: {"cell": OneStateRNNCell(5), "go_backwards": True, "unroll": True}, (3, 5), 2),
    (lambda: {"cell": TwoStatesRNNCell(5, state_size=[5, 5])}, (3, 5), 3),
    (lambda: {"cell": TwoStatesRNNCell(5, state_size=(5, 5))}, (3, 5), 3),
    (lambda: {"cell": TwoStatesRNNCell(5), "return_sequences": True}, (3, 2, 5), 3),
], ids=["one_int", "one_list", "one_tuple", "one_sequences", "one_backwards_unroll",
        "two_list", "two_tuple", "two_sequences"])
def test_basics(init_kwargs, expected_shape, trainable):
    run_layer_test(
        layers.RNN,
        init_kwargs=init_kwargs(),
        input_shape=(3, 2, 4),
        expected_output_shape=expected_shape,
        expected_num_trainable_weights=trainable,
        expected_num_non_trainable_weights=0,
    )


_SINGLE = [
    ({"return_sequences": False}, (3, 8)),
    ({"return_sequences": True}, (3, 4, 8)),
    ({"return_sequences": False, "return_state": True}, [(3, 8), (3, 8)]),
    ({"return_sequences": True, "return_state": True}, [(3, 4, 8), (3, 8)]),
]


@pytest.mark.parametrize("kwargs, expected", _SINGLE, ids=["last", "sequences", "last_state",
                                                           "sequences_state"])
def test_compute_output_shape_single_state(kwargs, expected):
    sequence = np.ones((3, 4, 5))
    layer = layers.RNN(OneStateRNNCell(8), **kwargs)
    output_shape = layer.compute_output_shape(sequence.shape)
    if kwargs.get("return_state"):
        for i, shape in enumerate(expected):
            assert tuple(output_shape[i]) == shape
    else:
        assert tuple(output_shape) == expected


_TWO = [
    ({"return_sequences": False}, (3, 8)),
    ({"return_sequences": True}, (3, 4, 8)),
    ({"return_sequences": False, "return_state": True}, [(3, 8), (3, 8), (3, 8)]),
    ({"return_sequences": True, "return_state": True}, [(3, 4, 8), (3, 8), (3, 8)]),
]


@pytest.mark.parametrize("kwargs, expected", _TWO, ids=["last", "sequences", "last_state",
                                                        "sequences_state"])
def test_compute_output_shape_two_states(kwargs, expected):
    sequence = np.ones((3, 4, 5))
    layer = layers.RNN(TwoStatesRNNCell(8), **kwargs)
    output_shape = layer.compute_output_shape(sequence.shape)
    if kwargs.get("return_state"):
        for i, shape in enumerate(expected):
            assert tuple(output_shape[i]) == shape
    else:
        assert tuple(output_shape) == expected


_DYNAMIC = [
    (OneStateRNNCell, {"return_sequences": False}, (None, 8)),
    (OneStateRNNCell, {"return_sequences": True}, (None, None, 8)),
    (OneStateRNNCell, {"return_sequences": False, "return_state": True}, [(None, 8), (None, 8)]),
    (OneStateRNNCell, {"return_sequences": True, "return_state": True},
     [(None, None, 8), (None, 8)]),
    (TwoStatesRNNCell, {"return_sequences": False}, (None, 8)),
    (TwoStatesRNNCell, {"return_sequences": True}, (None, None, 8)),
    (TwoStatesRNNCell, {"return_sequences": False, "return_state": True},
     [(None, 8), (None, 8), (None, 8)]),
    (TwoStatesRNNCell, {"return_sequences": True, "return_state": True},
     [(None, None, 8), (None, 8), (None, 8)]),
]


@pytest.mark.parametrize("cell_cls, kwargs, expected", _DYNAMIC)
def test_dynamic_shapes(cell_cls, kwargs, expected):
    sequence_shape = (None, None, 3)
    layer = layers.RNN(cell_cls(8), **kwargs)
    output_shape = layer.compute_output_shape(sequence_shape)
    if kwargs.get("return_state"):
        for i, shape in enumerate(expected):
            assert tuple(output_shape[i]) == shape
    else:
        assert tuple(output_shape) == expected


def test_forward_pass_single_state_last():
    sequence = np.ones((1, 2, 3))
    layer = layers.RNN(OneStateRNNCell(2), return_sequences=False)
    output = layer(sequence)
    assert_all_close(output, np.array([[9.0, 9.0]]))


def test_forward_pass_single_state_sequences():
    sequence = np.ones((1, 2, 3))
    layer = layers.RNN(OneStateRNNCell(2), return_sequences=True)
    output = layer(sequence)
    assert_all_close(output, np.array([[[3.0, 3.0], [9.0, 9.0]]]))


def test_forward_pass_single_state_last_state():
    sequence = np.ones((1, 2, 3))
    layer = layers.RNN(OneStateRNNCell(2), return_sequences=False, return_state=True)
    output, state = layer(sequence)
    assert_all_close(output, np.array([[9.0, 9.0]]))
    assert_all_close(state, np.array([[9.0, 9.0]]))


def test_forward_pass_single_state_sequences_state():
    sequence = np.ones((1, 2, 3))
    layer = layers.RNN(OneStateRNNCell(2), return_sequences=True, return_state=True)
    output, state = layer(sequence)
    assert_all_close(output, np.array([[[3.0, 3.0], [9.0, 9.0]]]))
    assert_all_close(state, np.array([[9.0, 9.0]]))


def test_forward_pass_two_states_last():
    sequence = np.ones((1, 2, 3))
    layer = layers.RNN(TwoStatesRNNCell(2), return_sequences=False)
    output = layer(sequence)
    assert_all_close(output, np.array([[18.0, 18.0]]))


def test_forward_pass_two_states_sequences():
    sequence = np.ones((1, 2, 3))
    layer = layers.RNN(TwoStatesRNNCell(2), return_sequences=True)
    output = layer(sequence)
    assert_all_close(output, np.array([[[6.0, 6.0], [18.0, 18.0]]]))


def test_forward_pass_two_states_last_state():
    sequence = np.ones((1, 2, 3))
    layer = layers.RNN(TwoStatesRNNCell(2), return_sequences=False, return_state=True)
    output, state1, state2 = layer(sequence)
    assert_all_close(output, np.array([[18.0, 18.0]]))
    assert_all_close(state1, np.array([[9.0, 9.0]]))
    assert_all_close(state2, np.array([[9.0, 9.0]]))


def test_forward_pass_two_states_sequences_state():
    sequence = np.ones((1, 2, 3))
    layer = layers.RNN(TwoStatesRNNCell(2), return_sequences=True, return_state=True)
    output, state1, state2 = layer(sequence)
    assert_all_close(output, np.array([[[6.0, 6.0], [18.0, 18.0]]]))
    assert_all_close(state1, np.array([[9.0, 9.0]]))
    assert_all_close(state2, np.array([[9.0, 9.0]]))


def test_passing_initial_state_single_state():
    sequence = np.ones((2, 3, 2))
    state = np.ones((2, 2))
    layer = layers.RNN(OneStateRNNCell(2), return_sequences=False)
    output = layer(sequence, initial_state=state)
    assert_all_close(output, np.array([[22.0, 22.0], [22.0, 22.0]]))


def test_passing_initial_state_single_state_return_state():
    sequence = np.ones((2, 3, 2))
    state = np.ones((2, 2))
    layer = layers.RNN(OneStateRNNCell(2), return_sequences=False, return_state=True)
    output, state = layer(sequence, initial_state=state)
    assert_all_close(output, np.array([[22.0, 22.0], [22.0, 22.0]]))
    assert_all_close(state, np.array([[22.0, 22.0], [22.0, 22.0]]))


def test_passing_initial_state_two_states():
    sequence = np.ones((2, 3, 2))
    state = [np.ones((2, 2)), np.ones((2, 2))]
    layer = layers.RNN(TwoStatesRNNCell(2), return_sequences=False)
    output = layer(sequence, initial_state=state)
    assert_all_close(output, np.array([[44.0, 44.0], [44.0, 44.0]]))


def test_passing_initial_state_two_states_return_state():
    sequence = np.ones((2, 3, 2))
    state = [np.ones((2, 2)), np.ones((2, 2))]
    layer = layers.RNN(TwoStatesRNNCell(2), return_sequences=False, return_state=True)
    output, state_1, state_2 = layer(sequence, initial_state=state)
    assert_all_close(output, np.array([[44.0, 44.0], [44.0, 44.0]]))
    assert_all_close(state_1, np.array([[22.0, 22.0], [22.0, 22.0]]))
    assert_all_close(state_2, np.array([[22.0, 22.0], [22.0, 22.0]]))


def test_statefulness_single_state():
    sequence = np.ones((1, 2, 3))
    layer = layers.RNN(OneStateRNNCell(2), stateful=True)
    layer(sequence)
    output = layer(sequence)
    assert_all_close(output, np.array([[45.0, 45.0]]))


def test_statefulness_single_state_return_state():
    sequence = np.ones((1, 2, 3))
    layer = layers.RNN(OneStateRNNCell(2), stateful=True, return_state=True)
    layer(sequence)
    output, state = layer(sequence)
    assert_all_close(output, np.array([[45.0, 45.0]]))
    assert_all_close(state, np.array([[45.0, 45.0]]))


def test_statefulness_two_states():
    sequence = np.ones((1, 2, 3))
    layer = layers.RNN(TwoStatesRNNCell(2), stateful=True)
    layer(sequence)
    output = layer(sequence)
    assert_all_close(output, np.array([[90.0, 90.0]]))


def test_statefulness_two_states_return_state():
    sequence = np.ones((1, 2, 3))
    layer = layers.RNN(TwoStatesRNNCell(2), stateful=True, return_state=True)
    layer(sequence)
    output, state_1, state_2 = layer(sequence)
    assert_all_close(output, np.array([[90.0, 90.0]]))
    assert_all_close(state_1, np.array([[45.0, 45.0]]))
    assert_all_close(state_2, np.array([[45.0, 45.0]]))


def test_go_backwards():
    sequence = np.arange(24).reshape((2, 3, 4)).astype("float32")
    layer = layers.RNN(OneStateRNNCell(2), go_backwards=True)
    layer(sequence)
    output = layer(sequence)
    assert_all_close(output, np.array([[202.0, 202.0], [538.0, 538.0]]))


def test_go_backwards_stateful_return_state():
    sequence = np.arange(24).reshape((2, 3, 4)).astype("float32")
    layer = layers.RNN(OneStateRNNCell(2), stateful=True, return_state=True)
    layer(sequence)
    output, state = layer(sequence)
    assert_all_close(output, np.array([[954.0, 954.0], [3978.0, 3978.0]]))
    assert_all_close(state, np.array([[954.0, 954.0], [3978.0, 3978.0]]))


@pytest.mark.parametrize("cell_cls", [TwoStatesRNNCell, OneStateRNNCell])
def test_serialization(cell_cls):
    layer = layers.RNN(cell_cls(2), return_sequences=False)
    run_class_serialization_test(layer)


def test_stateful_batch_size_mismatch_raises():
    batch_size = 4
    timesteps = 5
    features = 3

    layer = layers.RNN(TwoStatesRNNCell(2), stateful=True)

    # Call once with correct batch size
    x = torch.rand(batch_size, timesteps, features)
    _ = layer(x)

    # Expect ValueError when called with incorrect batch size
    with pytest.raises(ValueError, match="batch size"):
        x_bad = torch.rand(1, timesteps, features)
        layer(x_bad)


_MASKED_LAST = np.array([[57.0, 57.0], [126.0, 126.0]])
_MASKED_SEQUENCES = np.array([
    [[3.0, 3.0], [18.0, 18.0], [57.0, 57.0], [57.0, 57.0]],
    [[39.0, 39.0], [126.0, 126.0], [126.0, 126.0], [126.0, 126.0]],
])


@pytest.mark.parametrize("unroll", [False, True])
@pytest.mark.parametrize("return_sequences, expected", [(False, _MASKED_LAST),
                                                        (True, _MASKED_SEQUENCES)],
                         ids=["last", "sequences"])
def test_masking(return_sequences, expected, unroll):
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    layer = layers.RNN(OneStateRNNCell(2), return_sequences=return_sequences, unroll=unroll)
    output = layer(sequence, mask=mask)
    assert_all_close(output, expected, atol=1e-5, rtol=1e-5)
