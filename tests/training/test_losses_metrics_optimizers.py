"""Losses, metrics, optimizers and callbacks against numpy transcriptions of Keras's formulas."""

import io
import re

import numpy as np
import pytest
import torch

from rnnkit import callbacks, losses, metrics, optimizers
from rnnkit.errors import ConfigError, ShapeError

EPS = 1e-7
TOL = dict(rtol=1e-5, atol=1e-6)


def _t(a):
    return torch.as_tensor(np.asarray(a))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# -- losses ----------------------------------------------------------------------------------
def test_binary_crossentropy_clips_probabilities_like_keras():
    y = np.array([[1.0], [0.0], [1.0], [0.0]], dtype="float32")
    p = np.array([[0.9], [0.2], [0.0], [1.0]], dtype="float32")  # last two: log(0) unclipped
    pc = np.clip(p, EPS, 1 - EPS)
    expected = np.mean(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
    assert losses.get("binary_crossentropy")(_t(y), _t(p)).item() == pytest.approx(expected,
                                                                                      rel=1e-4)


def test_binary_crossentropy_from_logits():
    y = np.random.randint(0, 2, (6, 2)).astype("float32")
    z = np.random.randn(6, 2).astype("float32")
    s = _sigmoid(z)
    expected = np.mean(-(y * np.log(s) + (1 - y) * np.log(1 - s)))
    got = losses.BinaryCrossentropy(from_logits=True)(_t(y), _t(z)).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_categorical_crossentropy_renormalizes_and_from_logits():
    y = np.eye(3, dtype="float32")[[0, 2, 1, 2]]
    raw = np.abs(np.random.randn(4, 3)).astype("float32")  # not normalized: Keras divides by sum
    p = np.clip(raw / raw.sum(-1, keepdims=True), EPS, 1 - EPS)
    expected = np.mean(-(y * np.log(p)).sum(-1))
    got = losses.get("categorical_crossentropy")(_t(y), _t(raw)).item()
    assert got == pytest.approx(expected, rel=1e-5)
    z = np.random.randn(4, 3).astype("float32")
    expected = np.mean(-(y * np.log(_softmax(z))).sum(-1))
    got = losses.CategoricalCrossentropy(from_logits=True)(_t(y), _t(z)).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_sparse_categorical_crossentropy_with_per_step_mask():
    labels = np.random.randint(0, 4, (3, 5))
    z = np.random.randn(3, 5, 4).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype="float32")
    p = _softmax(z)
    nll = -np.log(np.take_along_axis(p, labels[..., None], -1))[..., 0]  # (3, 5)
    expected = (nll * mask).sum() / mask.sum()
    sparse = losses.SparseCategoricalCrossentropy()
    assert sparse(_t(labels), _t(p), _t(mask)).item() == pytest.approx(expected, rel=1e-5)
    logits = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert logits(_t(labels), _t(z), _t(mask)).item() == pytest.approx(expected, rel=1e-5)
    # trailing class axis of size 1 on the targets, as Keras accepts
    assert sparse(_t(labels[..., None]), _t(p), _t(mask)).item() == pytest.approx(expected,
                                                                                   rel=1e-5)


@pytest.mark.parametrize("name, formula", [
    ("mse", lambda e: e**2), ("mean_squared_error", lambda e: e**2),
    ("mae", np.abs), ("mean_absolute_error", np.abs),
    ("huber", lambda e: np.where(np.abs(e) <= 1, 0.5 * e**2, np.abs(e) - 0.5)),
])
def test_regression_losses_with_mask(name, formula):
    y = np.random.randn(4, 6, 2).astype("float32")
    p = y + 2 * np.random.randn(4, 6, 2).astype("float32")
    mask = (np.random.rand(4, 6) > 0.4).astype("float32")
    per_step = formula(p - y).mean(-1)
    loss = losses.get(name)
    assert loss(_t(y), _t(p)).item() == pytest.approx(per_step.mean(), rel=1e-5)
    expected = (per_step * mask).sum() / mask.sum()
    assert loss(_t(y), _t(p), _t(mask)).item() == pytest.approx(expected, rel=1e-5)


def test_mean_absolute_log_error_is_a_relative_error():
    y = np.array([[[1.0], [2.0], [4.0]]], "float32")
    p = np.array([[[2.0], [1.0], [4.0]]], "float32")  # twice, half, exact
    expected = (np.log(2) + np.log(2) + 0) / 3
    assert losses.get("male")(_t(y), _t(p)).item() == pytest.approx(expected, rel=1e-6)
    assert losses.get("mean_absolute_log_error")(_t(10 * y), _t(10 * p)).item() == \
        pytest.approx(expected, rel=1e-6)  # scale-free
    # a non-positive forecast is clamped, not NaN
    assert np.isfinite(losses.get("male")(_t(y), _t(-p)).item())


def test_per_sample_weight_broadcasts_over_steps():
    y, p = np.zeros((2, 3, 1), "float32"), np.ones((2, 3, 1), "float32")
    p[1] = 3.0
    got = losses.get("mse")(_t(y), _t(p), _t(np.array([0.0, 1.0]))).item()
    assert got == pytest.approx(9.0)


def test_loss_names_the_shapes_that_do_not_fit():
    with pytest.raises(ShapeError, match=r"binary_crossentropy: targets of shape \(8, 3\) do "
                                         r"not fit the model output of shape \(8, 1\)"):
        losses.get("binary_crossentropy")(torch.zeros(8, 3), torch.full((8, 1), 0.5))
    with pytest.raises(ShapeError, match=r"sparse_categorical_crossentropy"):
        losses.get("categorical_crossentropy")(torch.zeros(8), torch.full((8, 4), 0.25))
    with pytest.raises(ShapeError, match=r"class id 4 is outside \[0, 4\)"):
        losses.get("sparse_categorical_crossentropy")(torch.tensor([0, 4]), torch.rand(2, 4))


def test_loss_lookup():
    assert isinstance(losses.get(losses.binary_crossentropy), losses.BinaryCrossentropy)
    assert isinstance(losses.get("MAE"), losses.MeanAbsoluteError)
    with pytest.raises(ConfigError, match=r"loss: unknown loss 'cross'.*'binary_crossentropy'"):
        losses.get("cross")


# -- metrics ---------------------------------------------------------------------------------
def test_binary_accuracy_weighted_running_mean():
    m = metrics.get("binary_accuracy")
    m.update_state(_t([[1.0], [0.0], [1.0], [0.0]]), _t([[0.7], [0.6], [0.2], [0.1]]))
    assert m.result() == pytest.approx(0.5)
    m.update_state(_t([1.0, 1.0]), _t([[0.9], [0.8]]), sample_weight=_t([1.0, 1.0]))
    assert m.result() == pytest.approx(4 / 6)
    m.reset_state()
    assert m.result() == 0.0


@pytest.mark.parametrize("loss, expected", [
    ("binary_crossentropy", metrics.BinaryAccuracy),
    ("categorical_crossentropy", metrics.CategoricalAccuracy),
    ("sparse_categorical_crossentropy", metrics.SparseCategoricalAccuracy),
])
def test_acc_resolves_by_loss_and_keeps_its_name(loss, expected):
    for name in ("acc", "accuracy"):
        m = metrics.get(name, losses.get(loss))
        assert isinstance(m.resolved, expected) and m.name == name


def test_acc_resolves_by_shapes_for_other_losses():
    m = metrics.get("acc", losses.get("mse"))
    m.update_state(_t([2, 0]), _t([[0.1, 0.2, 0.7], [0.9, 0.0, 0.1]]))
    assert isinstance(m.resolved, metrics.SparseCategoricalAccuracy) and m.result() == 1.0
    one_unit = metrics.get("acc", losses.get("mse"))
    one_unit.update_state(_t([1.0, 0.0]), _t([[0.4], [0.3]]))
    assert isinstance(one_unit.resolved, metrics.BinaryAccuracy) and one_unit.result() == 0.5


def test_sparse_accuracy_with_mask_and_unknown_metric():
    m = metrics.get("sparse_categorical_accuracy")
    p = _t(np.eye(3, dtype="float32")[[[0, 1, 2], [2, 2, 2]]])  # predicted classes
    m.update_state(_t([[0, 1, 0], [2, 0, 0]]), p, sample_weight=_t([[1, 1, 0], [1, 0, 0]]))
    assert m.result() == 1.0
    with pytest.raises(ConfigError, match=r"metrics: unknown metric 'f1'.*'acc'"):
        metrics.get("f1")


# -- optimizers -----------------------------------------------------------------------------
def _one_param(values, grads):
    p = torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))
    return p, [np.asarray(g, dtype=np.float64) for g in grads]


def _steps(opt, p, grads):
    opt.build([p])
    for g in grads:
        opt.zero_grad()
        p.grad = torch.tensor(g)
        opt.step()
    return p.detach().numpy()


def test_rmsprop_matches_keras_update_rule():
    p, grads = _one_param([1.0, -2.0, 0.5], [[0.1, -0.3, 2.0], [0.2, 0.1, -1.0]])
    w, v = np.array([1.0, -2.0, 0.5]), np.zeros(3)
    for g in grads:  # Keras: ε inside the square root
        v = 0.9 * v + 0.1 * g**2
        w = w - 0.001 * g / np.sqrt(v + 1e-7)
    np.testing.assert_allclose(_steps(optimizers.RMSprop(), p, grads), w, rtol=1e-12)
    torch_p, _ = _one_param([1.0, -2.0, 0.5], grads)
    torch_w = _steps(optimizers.RMSprop(epsilon=1.0), torch_p, grads)
    assert not np.allclose(torch_w, w)  # ε matters: a large one changes the step


def test_rmsprop_momentum_and_centered():
    p, grads = _one_param([0.3, 0.7], [[1.0, -2.0], [0.5, 0.5], [-1.0, 0.2]])
    w, v, a, m = np.array([0.3, 0.7]), np.zeros(2), np.zeros(2), np.zeros(2)
    for g in grads:
        v = 0.8 * v + 0.2 * g**2
        a = 0.8 * a + 0.2 * g
        m = 0.5 * m + 0.01 * g / np.sqrt(v - a**2 + 1e-7)
        w = w - m
    opt = optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, centered=True)
    np.testing.assert_allclose(_steps(opt, p, grads), w, rtol=1e-10)


def test_adam_matches_keras_update_rule():
    p, grads = _one_param([1.0, -1.0], [[0.5, -0.1], [0.3, 0.2], [-0.4, 0.0]])
    w, m, v = np.array([1.0, -1.0]), np.zeros(2), np.zeros(2)
    for t, g in enumerate(grads, start=1):
        m = m + (g - m) * 0.1
        v = v + (g**2 - v) * 0.001
        w = w - 0.01 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(_steps(optimizers.Adam(0.01), p, grads), w, rtol=1e-10)


def test_adagrad_and_sgd_match_keras_update_rules():
    p, grads = _one_param([1.0, 2.0], [[0.5, -1.0], [0.2, 0.4]])
    w, acc = np.array([1.0, 2.0]), np.full(2, 0.1)
    for g in grads:
        acc = acc + g**2
        w = w - 0.1 * g / np.sqrt(acc + 1e-7)
    np.testing.assert_allclose(_steps(optimizers.Adagrad(0.1), p, grads), w, rtol=1e-10)
    for nesterov in (False, True):
        p, _ = _one_param([1.0, 2.0], grads)
        w, m = np.array([1.0, 2.0]), np.zeros(2)
        for g in grads:  # Keras: m = μm - lr·g; w += μm - lr·g (nesterov) or m
            m = 0.9 * m - 0.1 * g
            w = w + (0.9 * m - 0.1 * g if nesterov else m)
        got = _steps(optimizers.SGD(0.1, momentum=0.9, nesterov=nesterov), p, grads)
        np.testing.assert_allclose(got, w, rtol=1e-10)


def _sgd_update(**clip):
    a = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = optimizers.SGD(1.0, **clip)
    opt.build([a, b])
    a.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)  # norm 5
    b.grad = torch.tensor([0.3, 0.4], dtype=torch.float64)  # norm 0.5
    opt.step()
    return -a.detach().numpy(), -b.detach().numpy()


def test_clipnorm_clips_each_tensor_on_its_own():
    a, b = _sgd_update(clipnorm=1.0)
    np.testing.assert_allclose(a, [0.6, 0.8])
    np.testing.assert_allclose(b, [0.3, 0.4])


def test_global_clipnorm_and_clipvalue():
    a, b = _sgd_update(global_clipnorm=1.0)
    scale = 1.0 / np.sqrt(25 + 0.25)
    np.testing.assert_allclose(a, np.array([3.0, 4.0]) * scale)
    np.testing.assert_allclose(b, np.array([0.3, 0.4]) * scale)
    a, b = _sgd_update(clipvalue=0.35)
    np.testing.assert_allclose(a, [0.35, 0.35])
    np.testing.assert_allclose(b, [0.3, 0.35])
    with pytest.raises(ConfigError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        optimizers.Adam(clipnorm=1.0, clipvalue=1.0)


def test_learning_rate_settable_after_build():
    p, grads = _one_param([0.0], [[1.0]])
    opt = optimizers.SGD(0.1)
    opt.build([p])
    opt.learning_rate = 0.5
    assert opt.lr == 0.5 and opt.torch_optimizer.param_groups[0]["lr"] == 0.5
    p.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()
    assert p.item() == pytest.approx(-0.5)
    assert optimizers.RMSprop(lr=1e-4).learning_rate == 1e-4  # Keras 2's argument name


def test_optimizer_defaults_and_names():
    rms = optimizers.get("rmsprop")
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon, rms.centered) == \
        (0.001, 0.9, 0.0, 1e-7, False)
    adam = optimizers.get("Adam")
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == \
        (0.001, 0.9, 0.999, 1e-7)
    assert optimizers.get("sgd").learning_rate == 0.01
    assert optimizers.get("adagrad").initial_accumulator_value == 0.1
    with pytest.raises(ConfigError, match=r"optimizer: unknown optimizer 'adamw'.*'rmsprop'"):
        optimizers.get("adamw")


# -- callbacks ------------------------------------------------------------------------------
def test_history_and_progress_bar_format():
    out = io.StringIO()
    history, bar = callbacks.History(), callbacks.ProgressBar(stream=out)
    cbs = callbacks.CallbackList([history, bar], params={"epochs": 2, "steps": 3})
    cbs.call("on_train_begin", None)
    for epoch in range(2):
        cbs.call("on_epoch_begin", epoch, None)
        for step in range(3):
            cbs.call("on_train_batch_end", step, {"loss": 0.5 + step, "acc": 0.25})
        cbs.call("on_epoch_end", epoch, {"loss": 0.69314, "acc": 0.5, "val_loss": 0.00012})
    cbs.call("on_train_end", None)
    assert history.epoch == [0, 1]
    assert history.history == {"loss": [0.69314] * 2, "acc": [0.5] * 2, "val_loss": [0.00012] * 2}
    lines = out.getvalue().splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    assert re.fullmatch(r"3/3 \[={30}\] - \d+s \d+[mu]s/step - loss: 0\.6931 - acc: 0\.5000 "
                        r"- val_loss: 1\.2000e-04", lines[1]), lines[1]
