"""Keras 3's SimpleRNN tests, run against rnnkit.

Source: keras-team/keras, keras/src/layers/rnn/simple_rnn_test.py at commit
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


def test_basics_dropout():
    run_layer_test(
        layers.SimpleRNN,
        init_kwargs={"units": 3, "dropout": 0.5, "recurrent_dropout": 0.5},
        input_shape=(3, 2, 4),
        call_kwargs={"training": True},
        expected_output_shape=(3, 3),
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=0,
    )


def test_basics_regularizers():
    run_layer_test(
        layers.SimpleRNN,
        init_kwargs={
            "units": 3,
            "return_sequences": True,
            "bias_regularizer": "l1",
            "kernel_regularizer": "l2",
            "recurrent_regularizer": "l2",
        },
        input_shape=(3, 2, 4),
        expected_output_shape=(3, 2, 3),
        expected_num_losses=3,
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=0,
    )


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [[0.405432, 0.405432, 0.405432, 0.405432],
          [0.73605347, 0.73605347, 0.73605347, 0.73605347]]),
    ({"unroll": True}, [[0.405432, 0.405432, 0.405432, 0.405432],
                        [0.73605347, 0.73605347, 0.73605347, 0.73605347]]),
    ({"go_backwards": True}, [[0.11144729, 0.11144729, 0.11144729, 0.11144729],
                              [0.5528889, 0.5528889, 0.5528889, 0.5528889]]),
    ({"go_backwards": True, "unroll": True}, [[0.11144729, 0.11144729, 0.11144729, 0.11144729],
                                              [0.5528889, 0.5528889, 0.5528889, 0.5528889]]),
], ids=["plain", "unroll", "go_backwards", "go_backwards_unroll"])
def test_correctness(kwargs, expected):
    sequence = np.arange(24).reshape((2, 3, 4)).astype("float32")
    layer = layers.SimpleRNN(4, **_constant_kwargs(), **kwargs)
    output = layer(sequence)
    assert_all_close(output, np.array(expected))


def test_statefulness():
    sequence = np.arange(24).reshape((2, 3, 4)).astype("float32")
    layer = layers.SimpleRNN(4, stateful=True, **_constant_kwargs())
    layer(sequence)
    output = layer(sequence)
    assert_all_close(output, np.array([
        [0.40559256, 0.40559256, 0.40559256, 0.40559256],
        [0.7361247, 0.7361247, 0.7361247, 0.7361247],
    ]))
    layer.reset_state()
    layer(sequence)
    output = layer(sequence)
    assert_all_close(output, np.array([
        [0.40559256, 0.40559256, 0.40559256, 0.40559256],
        [0.7361247, 0.7361247, 0.7361247, 0.7361247],
    ]))


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [[0.33621645, 0.33621645, 0.33621645, 0.33621645],
          [0.6262637, 0.6262637, 0.6262637, 0.6262637]]),
    ({"go_backwards": True}, [[0.07344437, 0.07344437, 0.07344437, 0.07344437],
                              [0.43043602, 0.43043602, 0.43043602, 0.43043602]]),
], ids=["forward", "go_backwards"])
def test_pass_initial_state(kwargs, expected):
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    initial_state = np.arange(8).reshape((2, 4)).astype("float32")
    layer = layers.SimpleRNN(4, **_constant_kwargs(), **kwargs)
    output = layer(sequence, initial_state=initial_state)
    assert_all_close(output, np.array(expected))


def _masking_inputs():
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    mask = np.array([[True, True, False, True], [True, False, False, True]])
    return sequence, mask


def test_masking_unroll():
    sequence, mask = _masking_inputs()
    layer = layers.SimpleRNN(4, **_constant_kwargs(), unroll=True)
    output = layer(sequence, mask=mask)
    assert_all_close(output, np.array([
        [0.32951632, 0.32951632, 0.32951632, 0.32951632],
        [0.61799484, 0.61799484, 0.61799484, 0.61799484],
    ]))


def test_masking_return_sequences():
    sequence, mask = _masking_inputs()
    layer = layers.SimpleRNN(2, **_constant_kwargs(), return_sequences=True)
    output = layer(sequence, mask=mask)
    assert_all_close(output[0], np.array([
        [0.0599281, 0.0599281],
        [0.15122814, 0.15122814],
        [0.15122814, 0.15122814],
        [0.32394567, 0.32394567],
    ]))
    assert_all_close(output[1], np.array([
        [0.3969304, 0.3969304],
        [0.3969304, 0.3969304],
        [0.3969304, 0.3969304],
        [0.608085, 0.608085],
    ]))


def test_masking_zero_output_for_mask():
    sequence, mask = _masking_inputs()
    layer = layers.SimpleRNN(2, **_constant_kwargs(), return_sequences=True,
                             zero_output_for_mask=True)
    output = layer(sequence, mask=mask)
    assert_all_close(output[0], np.array([
        [0.0599281, 0.0599281],
        [0.15122814, 0.15122814],
        [0.0, 0.0],
        [0.32394567, 0.32394567],
    ]))
    assert_all_close(output[1], np.array([
        [0.3969304, 0.3969304],
        [0.0, 0.0],
        [0.0, 0.0],
        [0.608085, 0.608085],
    ]))


def test_masking_go_backwards():
    sequence, mask = _masking_inputs()
    layer = layers.SimpleRNN(4, **_constant_kwargs(), go_backwards=True)
    output = layer(sequence, mask=mask)
    assert_all_close(output, np.array([
        [0.07376196, 0.07376196, 0.07376196, 0.07376196],
        [0.43645123, 0.43645123, 0.43645123, 0.43645123],
    ]))
