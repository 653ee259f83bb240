"""Keras 3's GRU tests, run against rnnkit.

Source: keras-team/keras, keras/src/layers/rnn/gru_test.py at commit
3422977a5e38fb2f7709aaa9a08e47f0c43d0f60 (keras_harness.KERAS_COMMIT). Inputs, arguments, expected
arrays and tolerances are Keras's; ``layers`` and ``initializers`` are rnnkit's. Each sub-case of a
Keras test method (one layer checked) is one pytest case. Notes and the one test left out
(test_stateful_with_symbolic_batch_size, TensorFlow only): README.md here.
"""

from unittest import mock

import numpy as np
import pytest
import torch
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
        layers.GRU,
        init_kwargs=init_kwargs,
        input_shape=(3, 2, 4),
        call_kwargs=call_kwargs,
        expected_output_shape=expected_shape,
        expected_num_losses=losses,
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=0,
    )


_CORRECTNESS = [
    ({}, [[0.5217289, 0.5217289, 0.5217289],
          [0.6371659, 0.6371659, 0.6371659],
          [0.39384964, 0.39384964, 0.3938496]]),
    ({"go_backwards": True}, [[0.24406259, 0.24406259, 0.24406259],
                              [0.611516, 0.611516, 0.611516],
                              [0.3928808, 0.3928808, 0.3928808]]),
    ({"unroll": True}, [[0.5217289, 0.5217289, 0.5217289],
                        [0.6371659, 0.6371659, 0.6371659],
                        [0.39384964, 0.39384964, 0.3938496]]),
    ({"reset_after": False}, [[0.51447755, 0.51447755, 0.51447755],
                              [0.6426879, 0.6426879, 0.6426879],
                              [0.40208298, 0.40208298, 0.40208298]]),
    ({"use_bias": False}, [[0.49988455, 0.49988455, 0.49988455],
                           [0.64701194, 0.64701194, 0.64701194],
                           [0.4103359, 0.4103359, 0.4103359]]),
]


# Keras parameterizes this test over implementation 1 and 2 but never passes it to the layer.
@pytest.mark.parametrize("implementation", [1, 2])
@pytest.mark.parametrize("kwargs, expected", _CORRECTNESS,
                         ids=["plain", "go_backwards", "unroll", "reset_before", "no_bias"])
def test_correctness(implementation, kwargs, expected):
    sequence = np.arange(72).reshape((3, 6, 4)).astype("float32")
    layer = layers.GRU(3, **_constant_kwargs(), **kwargs)
    output = layer(sequence)
    assert_all_close(output, np.array(expected), atol=1e-5, rtol=1e-5)


def test_statefulness():
    sequence = np.arange(24).reshape((2, 3, 4)).astype("float32")
    layer = layers.GRU(4, stateful=True, **_constant_kwargs())
    layer(sequence)
    output = layer(sequence)
    expected = np.array([
        [0.29542392, 0.29542392, 0.29542392, 0.29542392],
        [0.5885018, 0.5885018, 0.5885018, 0.5885018],
    ])
    assert_all_close(output, expected)
    layer.reset_state()
    layer(sequence)
    output = layer(sequence)
    assert_all_close(output, expected)


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [[0.23774096, 0.33508456], [0.83659905, 1.0227708]]),
    ({"go_backwards": True}, [[0.13486053, 0.23261218], [0.78257304, 0.9691353]]),
], ids=["forward", "go_backwards"])
def test_pass_initial_state(kwargs, expected):
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    initial_state = np.arange(4).reshape((2, 2)).astype("float32")
    layer = layers.GRU(2, **_constant_kwargs(), **kwargs)
    output = layer(sequence, initial_state=initial_state)
    assert_all_close(output, np.array(expected))


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [[0.23774096, 0.33508456], [0.83659905, 1.0227708]]),
    ({"go_backwards": True}, [[0.13486053, 0.23261218], [0.78257304, 0.9691353]]),
], ids=["forward", "go_backwards"])
def test_pass_return_state(kwargs, expected):
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    initial_state = np.arange(4).reshape((2, 2)).astype("float32")
    layer = layers.GRU(2, **_constant_kwargs(), return_state=True, **kwargs)
    output, state = layer(sequence, initial_state=initial_state)
    assert_all_close(output, np.array(expected))
    assert_all_close(output, state)


def _masking_inputs():
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    mask = np.array([[True, True, False, True], [True, False, False, True]])
    return sequence, mask


def test_masking_unroll():
    sequence, mask = _masking_inputs()
    layer = layers.GRU(2, **_constant_kwargs(), unroll=True)
    output = layer(sequence, mask=mask)
    assert_all_close(output, np.array([[0.19393763, 0.19393763], [0.30818558, 0.30818558]]))


def test_masking_return_sequences():
    sequence, mask = _masking_inputs()
    layer = layers.GRU(2, **_constant_kwargs(), return_sequences=True)
    output = layer(sequence, mask=mask)
    assert_all_close(output[0], np.array([
        [0.03606692, 0.03606692],
        [0.09497581, 0.09497581],
        [0.09497581, 0.09497581],
        [0.19393763, 0.19393763],
    ]))
    assert_all_close(output[1], np.array([
        [0.16051409, 0.16051409],
        [0.16051409, 0.16051409],
        [0.16051409, 0.16051409],
        [0.30818558, 0.30818558],
    ]))


def test_masking_zero_output_for_mask():
    sequence, mask = _masking_inputs()
    layer = layers.GRU(2, **_constant_kwargs(), return_sequences=True, zero_output_for_mask=True)
    output = layer(sequence, mask=mask)
    assert_all_close(output[0], np.array([
        [0.03606692, 0.03606692],
        [0.09497581, 0.09497581],
        [0.0, 0.0],
        [0.19393763, 0.19393763],
    ]))
    assert_all_close(output[1], np.array([
        [0.16051409, 0.16051409],
        [0.0, 0.0],
        [0.0, 0.0],
        [0.30818558, 0.30818558],
    ]))


def test_masking_go_backwards():
    sequence, mask = _masking_inputs()
    layer = layers.GRU(2, **_constant_kwargs(), go_backwards=True)
    output = layer(sequence, mask=mask)
    assert_all_close(output, np.array([[0.11669192, 0.11669192], [0.28380975, 0.28380975]]))


def test_legacy_implementation_argument():
    sequence = np.arange(72).reshape((3, 6, 4)).astype("float32")
    layer = layers.GRU(3, **_constant_kwargs())
    config = layer.get_config()
    config["implementation"] = 0  # Add legacy argument
    layer = layers.GRU.from_config(config)
    output = layer(sequence)
    assert_all_close(output, np.array([
        [0.5217289, 0.5217289, 0.5217289],
        [0.6371659, 0.6371659, 0.6371659],
        [0.39384964, 0.39384964, 0.3938496],
    ]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Requires a CUDA device (as in Keras).")
def test_torch_cudnn_dispatch_fires():
    # Keras asserts its torch backend's cuDNN path really calls torch._VF.gru; rnnkit's native
    # kernel is that call, and backend="auto" must choose it on CUDA for a plain GRU.
    x = torch.randn(4, 6, 5, device="cuda")
    layer = layers.GRU(8, return_sequences=True)
    layer(x)  # build on cuda

    real_vf_gru = torch._VF.gru
    calls = []

    def spy(*args, **kwargs):
        calls.append(True)
        return real_vf_gru(*args, **kwargs)

    with mock.patch.object(torch._VF, "gru", side_effect=spy):
        _ = layer(x)
    assert len(calls) >= 1, "torch._VF.gru was never invoked"
