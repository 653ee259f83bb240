"""Core layers against numpy transcriptions of Keras's formulas, and Keras's parameter counts."""

import numpy as np
import pytest
import torch

from rnnkit import regularizers
from rnnkit.errors import ConfigError, ShapeError
from rnnkit.layers import (
    BatchNormalization,
    Conv1D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    LayerNormalization,
    MaxPooling1D,
    TimeDistributed,
)

TOL = dict(rtol=1e-5, atol=1e-5)


def _rand(*shape):
    return np.random.randn(*shape).astype("float32")


def _run(layer, x, **kwargs):
    return layer(torch.as_tensor(x), **kwargs).detach().numpy()


# -- Dense ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3)])
def test_dense_is_x_kernel_plus_bias_on_last_axis(shape):
    layer = Dense(4, activation="tanh")
    x = _rand(*shape)
    y = _run(layer, x)
    kernel, bias = layer.get_weights()
    assert kernel.shape == (3, 4) and bias.shape == (4,)
    np.testing.assert_allclose(y, np.tanh(x @ kernel + bias), **TOL)
    assert layer.compute_output_shape((None, *shape[1:])) == (None, *shape[1:-1], 4)


def test_dense_set_weights_takes_keras_layout():
    layer = Dense(2)
    layer(torch.zeros(1, 3))
    kernel, bias = _rand(3, 2), _rand(2)
    layer.set_weights([kernel, bias])
    np.testing.assert_allclose(layer.weight.detach().numpy(), kernel.T)
    with pytest.raises(ShapeError, match=r"weight 0 expected shape \(3, 2\), got \(2, 3\)"):
        layer.set_weights([kernel.T, bias])


def test_dense_param_count_and_feature_check():
    layer = Dense(1)
    layer(torch.zeros(2, 32))
    assert layer.count_params() == 33
    with pytest.raises(ShapeError, match=r"dense.*expected 32 input features.*\(2, 5\)"):
        layer(torch.zeros(2, 5))
    with pytest.raises(ShapeError, match=r"dense.*expected a float input, got dtype torch.int64"):
        layer(torch.zeros(2, 32, dtype=torch.int64))


def test_dense_regularizer_penalty():
    layer = Dense(3, kernel_regularizer=regularizers.l2(0.1))
    layer(torch.zeros(1, 4))
    expected = 0.1 * np.sum(layer.get_weights()[0] ** 2)
    assert layer.regularization_loss().item() == pytest.approx(expected, rel=1e-5)


def test_dense_input_dim_means_features():
    assert Dense(4, input_dim=3).declared_input_shape == (3,)


# -- Embedding -----------------------------------------------------------------------------
def test_embedding_lookup_count_and_mask():
    layer = Embedding(10000, 32, mask_zero=True)
    x = torch.tensor([[5, 9999, 0], [0, 0, 1]])
    y = layer(x)
    assert y.shape == (2, 3, 32)
    np.testing.assert_array_equal(y.detach().numpy(), layer.get_weights()[0][x.numpy()])
    assert layer.count_params() == 320_000
    assert layer.compute_mask(x, None).tolist() == [[True, True, False], [False, False, True]]
    assert Embedding(10, 2).compute_mask(x, None) is None
    w = layer.get_weights()[0]
    assert np.abs(w).max() <= 0.05 and np.abs(w).max() > 0.04  # Keras's uniform(-0.05, 0.05)


@pytest.mark.parametrize("ids, bad", [([[1, 10]], "10"), ([[-1, 3]], "-1")])
def test_embedding_rejects_ids_outside_vocabulary(ids, bad):
    layer = Embedding(10, 4, name="emb")
    with pytest.raises(ShapeError, match=rf"emb .*token id {bad} is outside \[0, input_dim=10\)"):
        layer(torch.tensor(ids))


def test_embedding_rejects_float_ids_before_building():
    layer = Embedding(10, 4, name="emb")
    with pytest.raises(ShapeError, match=r"emb .*integer token ids.*float64.*input_dim=10"):
        layer(torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    assert not layer.built


# -- Dropout -----------------------------------------------------------------------------
def test_dropout_scales_survivors_in_training_and_is_identity_in_eval():
    layer = Dropout(0.25)
    x = torch.ones(200, 50)
    assert torch.equal(layer(x), x)  # Keras: a call is inference unless training=True
    y = layer(x, training=True)
    assert torch.unique(y).tolist() == pytest.approx([0.0, 1 / 0.75])
    assert abs((y == 0).float().mean().item() - 0.25) < 0.02
    layer.train()  # torch's switch: training calls until eval()
    assert (layer(x) == 0).any()
    assert torch.equal(layer(x, training=False), x)
    layer.eval()
    assert torch.equal(layer(x), x)
    with pytest.raises(ConfigError, match="rate must be in"):
        Dropout(1.5)


# -- Normalization -------------------------------------------------------------------------
def _bn_reference(x, gamma, beta, mean, var, eps=1e-3):
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def test_batchnorm_training_uses_batch_moments_and_updates_moving_ones():
    layer = BatchNormalization()
    x = _rand(4, 6, 3) * 2 + 1
    y = _run(layer, x, training=True)
    mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    gamma, beta, moving_mean, moving_var = layer.get_weights()
    np.testing.assert_allclose(y, _bn_reference(x, gamma, beta, mean, var), **TOL)
    np.testing.assert_allclose(moving_mean, 0.01 * mean, **TOL)
    np.testing.assert_allclose(moving_var, 0.99 + 0.01 * var, **TOL)


def test_batchnorm_eval_uses_moving_moments():
    layer = BatchNormalization(momentum=0.5, epsilon=1e-2)
    layer(torch.zeros(2, 4))
    gamma, beta = _rand(4), _rand(4)
    moving_mean, moving_var = _rand(4), np.abs(_rand(4)) + 0.5
    layer.set_weights([gamma, beta, moving_mean, moving_var])
    layer.eval()
    x = _rand(5, 4)
    np.testing.assert_allclose(_run(layer, x),
                               _bn_reference(x, gamma, beta, moving_mean, moving_var, 1e-2),
                               **TOL)


def test_batchnorm_masked_steps_do_not_count():
    layer = BatchNormalization()
    x = _rand(2, 5, 3)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=bool)
    y = _run(layer, x, mask=torch.as_tensor(mask), training=True)
    kept = x[mask]  # (5, 3)
    np.testing.assert_allclose(y[mask], _bn_reference(kept, 1, 0, kept.mean(0), kept.var(0)),
                               **TOL)


def test_batchnorm_counts_moving_statistics_as_non_trainable():
    layer = BatchNormalization()
    layer(torch.zeros(2, 16))
    assert layer.count_params() == 64
    assert sum(p.numel() for p in layer.parameters() if p.requires_grad) == 32


def test_layernorm_normalizes_each_sample():
    layer = LayerNormalization()
    x = _rand(3, 4, 6) * 3
    layer(torch.as_tensor(x))
    gamma, beta = _rand(6), _rand(6)
    layer.set_weights([gamma, beta])
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(_run(layer, x), gamma * (x - mean) / np.sqrt(var + 1e-3) + beta,
                               **TOL)


# -- Conv1D and pooling ---------------------------------------------------------------------
def _conv1d_reference(x, kernel, bias, stride, dilation, padding):
    """Keras's Conv1D on channels-last x (B, T, I) with kernel (k, I, F)."""
    k = kernel.shape[0]
    span = dilation * (k - 1) + 1
    T = x.shape[1]
    if padding == "causal":
        left, right = span - 1, 0
    elif padding == "same":
        total = max((int(np.ceil(T / stride)) - 1) * stride + span - T, 0)
        left, right = total // 2, total - total // 2
    else:
        left = right = 0
    xp = np.pad(x, ((0, 0), (left, right), (0, 0)))
    steps = (xp.shape[1] - span) // stride + 1
    out = np.zeros((x.shape[0], steps, kernel.shape[2]), dtype=np.float64)
    for t in range(steps):
        for j in range(k):
            out[:, t] += xp[:, t * stride + j * dilation] @ kernel[j]
    return out + bias


@pytest.mark.parametrize("padding, stride, dilation", [
    ("valid", 1, 1), ("valid", 2, 1), ("same", 1, 1), ("same", 3, 1), ("causal", 1, 2),
    ("valid", 1, 3), ("same", 1, 2),
])
def test_conv1d_matches_keras_formula(padding, stride, dilation):
    layer = Conv1D(4, 3, strides=stride, padding=padding, dilation_rate=dilation)
    x = _rand(2, 11, 3)
    layer(torch.as_tensor(x))
    kernel, bias = _rand(3, 3, 4), _rand(4)
    layer.set_weights([kernel, bias])
    y = _run(layer, x)
    np.testing.assert_allclose(y, _conv1d_reference(x, kernel, bias, stride, dilation, padding),
                               rtol=1e-4, atol=1e-4)
    assert layer.compute_output_shape((None, 11, 3)) == (None, y.shape[1], 4)


def test_conv1d_causal_output_sees_only_the_past():
    layer = Conv1D(2, 3, padding="causal", dilation_rate=2)
    x = torch.randn(1, 12, 1)
    x2 = x.clone()
    x2[0, 7] += 1.0
    y, y2 = layer(x), layer(x2)
    assert torch.equal(y[:, :7], y2[:, :7]) and not torch.equal(y[:, 7], y2[:, 7])


def test_conv1d_param_count_and_keras_kernel_layout():
    layer = Conv1D(32, 7, activation="relu")
    layer(torch.zeros(1, 20, 1))
    assert layer.count_params() == 256
    assert [w.shape for w in layer.get_weights()] == [(7, 1, 32), (32,)]


def test_conv1d_rejects_unknown_padding_and_wrong_rank():
    with pytest.raises(ConfigError, match=r"unknown padding 'full'.*'causal'"):
        Conv1D(2, 3, padding="full")
    with pytest.raises(ShapeError, match=r"conv.*expected input of rank 3, got shape \(4, 5\)"):
        Conv1D(2, 3)(torch.zeros(4, 5))


@pytest.mark.parametrize("padding, pool, stride", [("valid", 2, None), ("valid", 3, 2),
                                                   ("same", 3, 2), ("same", 2, None)])
def test_max_pooling_matches_windows(padding, pool, stride):
    layer = MaxPooling1D(pool, stride, padding)
    x = _rand(2, 9, 3)
    y = _run(layer, x)
    s = stride or pool
    if padding == "same":
        total = max((int(np.ceil(9 / s)) - 1) * s + pool - 9, 0)
        xp = np.pad(x, ((0, 0), (total // 2, total - total // 2), (0, 0)),
                    constant_values=-np.inf)
    else:
        xp = x
    steps = (xp.shape[1] - pool) // s + 1
    expected = np.stack([xp[:, t * s:t * s + pool].max(1) for t in range(steps)], axis=1)
    np.testing.assert_array_equal(y, expected)
    assert layer.compute_output_shape((None, 9, 3)) == (None, steps, 3)


def test_global_pooling_ignores_masked_steps():
    x = _rand(2, 4, 3)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=bool)
    m = torch.as_tensor(mask)
    avg = _run(GlobalAveragePooling1D(), x, mask=m)
    mx = _run(GlobalMaxPooling1D(), x, mask=m)
    np.testing.assert_allclose(avg[0], x[0, :2].mean(0), **TOL)
    np.testing.assert_allclose(avg[1], x[1].mean(0), **TOL)
    np.testing.assert_array_equal(mx[0], x[0, :2].max(0))
    np.testing.assert_allclose(_run(GlobalAveragePooling1D(), x), x.mean(1), **TOL)
    assert GlobalAveragePooling1D().compute_mask(torch.as_tensor(x), m) is None


def test_flatten_and_time_distributed():
    x = _rand(2, 3, 4)
    assert _run(Flatten(), x).shape == (2, 12)
    assert Flatten().compute_output_shape((None, 3, 4)) == (None, 12)
    assert Flatten().compute_output_shape((None, None, 4)) == (None, None)
    td = TimeDistributed(Dense(5))
    y = _run(td, x)
    kernel, bias = td.get_weights()
    np.testing.assert_allclose(y, x @ kernel + bias, **TOL)
    assert td.count_params() == 25
    assert td.compute_output_shape((None, 3, 4)) == (None, 3, 5)
    mask = torch.tensor([[True, False, True]] * 2)
    assert td.compute_mask(torch.as_tensor(x), mask) is mask
