"""Keras 3's Bidirectional tests, run against rnnkit.

Source: keras-team/keras, keras/src/layers/rnn/bidirectional_test.py at commit
3422977a5e38fb2f7709aaa9a08e47f0c43d0f60 (keras_harness.KERAS_COMMIT). Inputs, arguments, expected
arrays and tolerances are Keras's; ``layers`` and ``initializers`` are rnnkit's. Each sub-case of a
Keras test method (one layer checked) is one pytest case. Left out (Keras's private dispatch
predicates test_fused_lstm_eligibility and test_fused_gru_eligibility) and other notes: README.md.
"""

from unittest import mock

import numpy as np
import pytest
import torch
from keras_harness import assert_all_close, run_layer_test

from rnnkit import initializers, layers


def _constant_kwargs(kernel=0.01, recurrent=0.02, bias=0.03):
    return dict(
        kernel_initializer=initializers.Constant(kernel),
        recurrent_initializer=initializers.Constant(recurrent),
        bias_initializer=initializers.Constant(bias),
    )


def test_basics_concat():
    run_layer_test(
        layers.Bidirectional,
        init_kwargs={"layer": layers.SimpleRNN(4)},
        input_shape=(3, 2, 4),
        expected_output_shape=(3, 8),
        expected_num_trainable_weights=6,
        expected_num_non_trainable_weights=0,
    )


def test_basics_backward_layer_sum():
    run_layer_test(
        layers.Bidirectional,
        init_kwargs={
            "layer": layers.SimpleRNN(4),
            "backward_layer": layers.SimpleRNN(4, go_backwards=True),
            "merge_mode": "sum",
        },
        input_shape=(3, 2, 4),
        expected_output_shape=(3, 4),
        expected_num_trainable_weights=6,
        expected_num_non_trainable_weights=0,
    )


def _sequence():
    return np.arange(24).reshape((2, 3, 4)).astype("float32")


def test_correctness_concat():
    forward_layer = layers.SimpleRNN(2, **_constant_kwargs())
    layer = layers.Bidirectional(layer=forward_layer)
    output = layer(_sequence())
    assert_all_close(output, np.array([
        [0.39687276, 0.39687276, 0.10004295, 0.10004295],
        [0.7237238, 0.7237238, 0.53391594, 0.53391594],
    ]), atol=1e-5, rtol=1e-5)


def test_correctness_ave():
    forward_layer = layers.SimpleRNN(2, **_constant_kwargs())
    layer = layers.Bidirectional(layer=forward_layer, merge_mode="ave")
    output = layer(_sequence())
    assert_all_close(output, np.array([[0.24845785, 0.24845785], [0.6288199, 0.6288199]]),
                     atol=1e-5, rtol=1e-5)


def test_correctness_merge_none():
    forward_layer = layers.SimpleRNN(2, **_constant_kwargs())
    layer = layers.Bidirectional(layer=forward_layer, merge_mode=None)
    output1, output2 = layer(_sequence())
    assert_all_close(output1, np.array([[0.39687276, 0.39687276], [0.7237238, 0.7237238]]),
                     atol=1e-5, rtol=1e-5)
    assert_all_close(output2, np.array([[0.10004295, 0.10004295], [0.53391594, 0.53391594]]),
                     atol=1e-5, rtol=1e-5)


def test_correctness_backward_layer_mul():
    forward_layer = layers.SimpleRNN(2, **_constant_kwargs())
    backward_layer = layers.SimpleRNN(2, **_constant_kwargs(0.03, 0.02, 0.01), go_backwards=True)
    layer = layers.Bidirectional(layer=forward_layer, backward_layer=backward_layer,
                                 merge_mode="mul")
    output = layer(_sequence())
    assert_all_close(output, np.array([[0.08374989, 0.08374989], [0.6740834, 0.6740834]]),
                     atol=1e-5, rtol=1e-5)


def test_correctness_gru_sum():
    forward_layer = layers.GRU(2, **_constant_kwargs(), return_sequences=True)
    layer = layers.Bidirectional(layer=forward_layer, merge_mode="sum")
    output = layer(_sequence())
    assert_all_close(output, np.array([
        [[0.20937867, 0.20937867], [0.34462988, 0.34462988], [0.40290534, 0.40290534]],
        [[0.59829646, 0.59829646], [0.6734641, 0.6734641], [0.6479671, 0.6479671]],
    ]), atol=1e-5, rtol=1e-5)


def test_statefulness():
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    forward_layer = layers.LSTM(2, **_constant_kwargs(), stateful=True)
    layer = layers.Bidirectional(layer=forward_layer)
    layer(sequence)
    output = layer(sequence)
    expected = np.array([
        [0.26234663, 0.26234663, 0.16959146, 0.16959146],
        [0.6137073, 0.6137073, 0.5381646, 0.5381646],
    ])
    assert_all_close(output, expected, atol=1e-5, rtol=1e-5)
    layer.reset_state()
    layer(sequence)
    output = layer(sequence)
    assert_all_close(output, expected, atol=1e-5, rtol=1e-5)


def test_pass_initial_state():
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    initial_state = [np.arange(4).reshape((2, 2)).astype("float32") * k for k in (1, 2, 3, 4)]
    forward_layer = layers.LSTM(2, **_constant_kwargs())
    layer = layers.Bidirectional(layer=forward_layer)
    output = layer(sequence, initial_state=initial_state)
    assert_all_close(output, np.array([
        [0.20794602, 0.4577124, 0.14046375, 0.48191673],
        [0.6682636, 0.6711909, 0.60943645, 0.60950446],
    ]), atol=1e-5, rtol=1e-5)


def test_masking():
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    forward_layer = layers.GRU(2, **_constant_kwargs())
    layer = layers.Bidirectional(layer=forward_layer)
    mask = np.array([[True, True, False, True], [True, False, False, True]])
    output = layer(sequence, mask=mask)
    assert_all_close(output, np.array([
        [0.19393763, 0.19393763, 0.11669192, 0.11669192],
        [0.30818558, 0.30818558, 0.28380975, 0.28380975],
    ]), atol=1e-5, rtol=1e-5)


def test_return_state():
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    forward_layer = layers.LSTM(2, **_constant_kwargs(), return_state=True)
    layer = layers.Bidirectional(layer=forward_layer)
    output, h1, c1, h2, c2 = layer(sequence)
    tol = dict(atol=1e-5, rtol=1e-5)
    assert_all_close(output, np.array([
        [0.1990008, 0.1990008, 0.12659755, 0.12659755],
        [0.52335435, 0.52335435, 0.44717982, 0.44717982],
    ]), **tol)
    assert_all_close(h1, np.array([[0.1990008, 0.1990008], [0.52335435, 0.52335435]]), **tol)
    assert_all_close(c1, np.array([[0.35567185, 0.35567185], [1.0492687, 1.0492687]]), **tol)
    assert_all_close(h2, np.array([[0.12659755, 0.12659755], [0.44717982, 0.44717982]]), **tol)
    assert_all_close(c2, np.array([[0.2501858, 0.2501858], [0.941473, 0.941473]]), **tol)


_X = np.array([[[101, 202], [303, 404]]])


@pytest.mark.parametrize("merge_mode", ["ave", "concat", "mul", "sum", None])
def test_output_shape_return_state(merge_mode):
    sub_layer = layers.LSTM(2, return_state=True)
    layer = layers.Bidirectional(sub_layer, merge_mode=merge_mode)
    output = layer(_X)
    output_shape = layer.compute_output_shape(_X.shape)
    assert len(output) == len(output_shape)  # Keras zips them; a missing shape must not pass
    for out, shape in zip(output, output_shape):
        assert tuple(out.shape) == tuple(shape)


@pytest.mark.parametrize("merge_mode", ["concat", "ave", "mul", "sum"])
def test_output_shape(merge_mode):
    sub_layer = layers.LSTM(2, return_state=False)
    layer = layers.Bidirectional(sub_layer, merge_mode=merge_mode)
    output = layer(_X)
    output_shape = layer.compute_output_shape(_X.shape)
    assert tuple(output.shape) == tuple(output_shape)


def test_output_shape_merge_none():
    # return_state=False & merge_mode=None
    sub_layer = layers.LSTM(2, return_state=False)
    layer = layers.Bidirectional(sub_layer, merge_mode=None)
    output = layer(_X)
    output_shape = layer.compute_output_shape(_X.shape)
    assert len(output) == len(output_shape)
    for out, shape in zip(output, output_shape):
        assert tuple(out.shape) == tuple(shape)


@pytest.mark.parametrize("use_cudnn", [True, False, "auto"])
@pytest.mark.parametrize("rnn_class", [layers.GRU, layers.LSTM], ids=["GRU", "LSTM"])
def test_keeps_use_cudnn(rnn_class, use_cudnn):
    # keep use_cudnn if the layer has it
    rnn = rnn_class(1, use_cudnn=use_cudnn)
    bidi = layers.Bidirectional(rnn)
    assert bidi.forward_layer.use_cudnn == use_cudnn
    assert bidi.backward_layer.use_cudnn == use_cudnn


def test_keeps_use_cudnn_ignored_by_simple_rnn():
    # otherwise ignore it
    rnn = layers.SimpleRNN(1)
    bidi = layers.Bidirectional(rnn)
    assert not hasattr(bidi.forward_layer, "use_cudnn")
    assert not hasattr(bidi.backward_layer, "use_cudnn")


@pytest.mark.parametrize("rnn_class", [layers.LSTM, layers.GRU], ids=["lstm", "gru"])
def test_fused_matches_unfused(rnn_class):
    # Keras's test_fused_lstm_matches_unfused and test_fused_gru_matches_unfused: the fused
    # path (here torch's native kernel, one call for both directions) against the two-layer path.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 4)).astype("float32")

    def _build(use_cudnn):
        layer = layers.Bidirectional(
            rnn_class(
                5,
                use_cudnn=use_cudnn,
                return_sequences=True,
                kernel_initializer=initializers.GlorotUniform(seed=1),
                recurrent_initializer=initializers.Orthogonal(seed=2),
            )
        )
        layer.build(x.shape)
        return layer

    ref = _build(use_cudnn=False)
    fused = _build(use_cudnn="auto")
    fused.set_weights(ref.get_weights())
    assert_all_close(ref(x), fused(x), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Requires a CUDA device (as in Keras).")
def test_torch_cudnn_bidirectional_gru_dispatch_fires():
    x = torch.randn(4, 6, 5, device="cuda")
    layer = layers.Bidirectional(layers.GRU(8, use_cudnn="auto", return_sequences=True))
    layer(x)  # build on cuda

    real_vf_gru = torch._VF.gru
    calls = []

    def spy(*args, **kwargs):
        calls.append(True)
        return real_vf_gru(*args, **kwargs)

    with mock.patch.object(torch._VF, "gru", side_effect=spy):
        _ = layer(x)
    assert len(calls) >= 1, "torch._VF.gru was never invoked from Bidirectional(GRU)"
