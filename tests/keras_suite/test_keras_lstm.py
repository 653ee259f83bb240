"""Keras 3's LSTM tests, run against rnnkit.

Source: keras-team/keras, keras/src/layers/rnn/lstm_test.py at commit
3422977a5e38fb2f7709aaa9a08e47f0c43d0f60 (keras_harness.KERAS_COMMIT). Inputs, arguments, expected
arrays and tolerances are Keras's; ``layers`` and ``initializers`` are rnnkit's. Each sub-case of a
Keras test method (one layer checked) is one pytest case. Notes: README.md here.
"""

import numpy as np
import pytest
from keras_harness import assert_all_close, run_layer_test

from rnnkit import initializers, layers


def _constant_kwargs():
    return dict(
        kernel_initializer=initializers.Constant(0.01),
        recurrent_initializer=initializers.Constant(0.02),
        bias_initializer=initializers.Constant(0.03),
    )


@pytest.mark.parametrize("init_kwargs, call_kwargs, expected_shape, losses", [
    ({"units": 3, "dropout": 0.5}, {"training": True}, (3, 3), None),
    ({"units": 3, "dropout": 0.5, "recurrent_dropout": 0.5}, {"training": True}, (3, 3), None),
    ({"units": 3, "return_sequences": True, "bias_regularizer": "l1",
      "kernel_regularizer": "l2", "recurrent_regularizer": "l2"}, {}, (3, 2, 3), 3),
], ids=["dropout", "recurrent_dropout", "regularizers"])
def test_basics(init_kwargs, call_kwargs, expected_shape, losses):
    run_layer_test(
        layers.LSTM,
        init_kwargs=init_kwargs,
        input_shape=(3, 2, 4),
        call_kwargs=call_kwargs,
        expected_output_shape=expected_shape,
        expected_num_losses=losses,
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=0,
    )


_CORRECTNESS = [
    ({}, [[0.6288687, 0.6288687, 0.6288687],
          [0.86899155, 0.86899155, 0.86899155],
          [0.9460773, 0.9460773, 0.9460773]]),
    ({"go_backwards": True}, [[0.35622165, 0.35622165, 0.35622165],
                              [0.74789524, 0.74789524, 0.74789524],
                              [0.8872726, 0.8872726, 0.8872726]]),
    ({"unroll": True}, [[0.6288687, 0.6288687, 0.6288687],
                        [0.86899155, 0.86899155, 0.86899155],
                        [0.9460773, 0.9460773, 0.9460773]]),
    ({"unit_forget_bias": False}, [[0.57019705, 0.57019705, 0.57019705],
                                   [0.8661914, 0.8661914, 0.8661914],
                                   [0.9459622, 0.9459622, 0.9459622]]),
    ({"use_bias": False}, [[0.54986924, 0.54986924, 0.54986924],
                           [0.86226785, 0.86226785, 0.86226785],
                           [0.9443936, 0.9443936, 0.9443936]]),
]


@pytest.mark.parametrize("implementation", [1, 2])
@pytest.mark.parametrize("kwargs, expected", _CORRECTNESS,
                         ids=["plain", "go_backwards", "unroll", "no_unit_forget_bias", "no_bias"])
def test_correctness(implementation, kwargs, expected):
    sequence = np.arange(72).reshape((3, 6, 4)).astype("float32")
    layer = layers.LSTM(3, **_constant_kwargs(), **kwargs, implementation=implementation)
    output = layer(sequence)
    assert_all_close(output, np.array(expected), atol=1e-5, rtol=1e-5)


def test_statefulness():
    sequence = np.arange(24).reshape((2, 3, 4)).astype("float32")
    layer = layers.LSTM(4, stateful=True, **_constant_kwargs())
    layer(sequence)
    output = layer(sequence)
    expected = np.array([
        [0.3124785, 0.3124785, 0.3124785, 0.3124785],
        [0.6863672, 0.6863672, 0.6863672, 0.6863672],
    ])
    assert_all_close(output, expected, atol=1e-5, rtol=1e-5)
    layer.reset_state()
    layer(sequence)
    output = layer(sequence)
    assert_all_close(output, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [[0.20574439, 0.3558822], [0.64930826, 0.66276]]),
    ({"go_backwards": True}, [[0.13281618, 0.2790356], [0.5839337, 0.5992567]]),
], ids=["forward", "go_backwards"])
def test_pass_initial_state(kwargs, expected):
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    initial_state = [
        np.arange(4).reshape((2, 2)).astype("float32"),
        np.arange(4).reshape((2, 2)).astype("float32"),
    ]
    layer = layers.LSTM(2, **_constant_kwargs(), **kwargs)
    output = layer(sequence, initial_state=initial_state)
    assert_all_close(output, np.array(expected), atol=1e-5, rtol=1e-5)


def _masking_inputs():
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    return sequence, mask


def test_masking_unroll():
    sequence, mask = _masking_inputs()
    layer = layers.LSTM(2, **_constant_kwargs(), unroll=True)
    output = layer(sequence, mask=mask)
    assert_all_close(output, np.array([[0.11755939, 0.11755939], [0.28556206, 0.28556206]]),
                     atol=1e-5, rtol=1e-5)


def test_masking_return_sequences():
    sequence, mask = _masking_inputs()
    layer = layers.LSTM(2, **_constant_kwargs(), return_sequences=True)
    output = layer(sequence, mask=mask)
    assert_all_close(output[0], np.array([
        [0.01588910, 0.01588910],
        [0.05552048, 0.05552048],
        [0.11755939, 0.11755939],
        [0.11755939, 0.11755939],
    ]), atol=1e-5, rtol=1e-5)
    assert_all_close(output[1], np.array([
        [0.14185596, 0.14185596],
        [0.28556206, 0.28556206],
        [0.28556206, 0.28556206],
        [0.28556206, 0.28556206],
    ]), atol=1e-5, rtol=1e-5)


def test_masking_zero_output_for_mask():
    sequence, mask = _masking_inputs()
    layer = layers.LSTM(2, **_constant_kwargs(), return_sequences=True, zero_output_for_mask=True)
    output = layer(sequence, mask=mask)
    assert_all_close(output[0], np.array([
        [0.01588910, 0.01588910],
        [0.05552048, 0.05552048],
        [0.11755939, 0.11755939],
        [0.0, 0.0],
    ]), atol=1e-5, rtol=1e-5)
    assert_all_close(output[1], np.array([
        [0.14185596, 0.14185596],
        [0.28556206, 0.28556206],
        [0.0, 0.0],
        [0.0, 0.0],
    ]), atol=1e-5, rtol=1e-5)


def test_masking_go_backwards():
    sequence, _ = _masking_inputs()
    backwards_mask = np.array([[False, True, True, True], [False, False, True, True]])
    layer = layers.LSTM(2, **_constant_kwargs(), go_backwards=True)
    output = layer(sequence, mask=backwards_mask)
    assert_all_close(output, np.array([[0.15341201, 0.15341201], [0.3844719, 0.3844719]]),
                     atol=1e-5, rtol=1e-5)
