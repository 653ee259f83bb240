"""Mixed precision: every kernel under bf16 autocast against its own float32 run, within the
tolerance table of training/precision.py; fp16 refused on CPU; fit in bf16 keeps float32 weights."""

import numpy as np
import pytest
import torch

from rnnkit import layers
from rnnkit.engine import cpu_features, kernels
from rnnkit.errors import BackendError, ConfigError
from rnnkit.models import Sequential
from rnnkit.training.precision import TOLERANCES

# one layer per kernel that the kernel supports (the registry is asked explicitly)
LAYERS = {
    "native": lambda: layers.LSTM(8, return_sequences=True, backend="native"),
    "fused": lambda: layers.LSTM(8, peephole=True, return_sequences=True, backend="fused"),
    "compiled": lambda: layers.GRU(8, reset_after=False, return_sequences=True,
                                   backend="compiled"),
    "reference": lambda: layers.GRU(8, reset_after=False, return_sequences=True,
                                    backend="reference"),
    "parallel": lambda: layers.SimpleRNN(8, activation="linear", return_sequences=True,
                                         backend="parallel"),
}


def test_every_registered_kernel_is_covered():
    # gpu runs on CUDA only; its autocast path is tested in test_gpu_kernel.py (Triton's interpreter)
    assert set(kernels()) - {"gpu"} == set(LAYERS)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("kernel", sorted(LAYERS))
def test_bf16_autocast_within_tolerance(kernel):
    layer = LAYERS[kernel]()
    x = torch.randn(4, 20, 3)
    if kernel == "compiled":
        ops, reason = kernels()["compiled"].ops()
        if ops is None:
            pytest.skip(f"the compiled kernel is unavailable here: {reason}")
    missing = cpu_features.onednn_lstm_reason(torch.bfloat16) if kernel == "native" else ""
    if missing:  # an explicit request on a CPU without oneDNN's bf16 (AVX2): refused, with the reason
        with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(BackendError) as refused:
            layer(x)
        assert str(refused.value) == f"backend 'native' cannot run LSTMCell: {missing}"
        return
    upstream = torch.randn(4, 20, 8)
    ref = layer(x)
    (ref * upstream).sum().backward()
    ref_grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer(x)
    (low.float() * upstream).sum().backward()
    assert layer.last_kernel == kernel
    tol = TOLERANCES["bf16"]
    assert _relative(low, ref.detach()) <= tol["outputs"]
    for p, g in zip(layer.parameters(), ref_grads):
        assert _relative(p.grad, g) <= tol["gradients"]
    if kernel in ("fused", "compiled"):  # upcast: the recurrence ran in float32, as without autocast
        assert low.dtype == torch.float32 and _relative(low, ref.detach()) == 0.0
    else:  # it really ran in bf16 somewhere: not bit-identical to float32
        assert _relative(low, ref.detach()) > 0.0


def _model():
    model = Sequential([layers.LSTM(8, return_sequences=True), layers.GRU(4), layers.Dense(1)])
    return model


def test_fit_in_bf16_learns_and_keeps_float32_weights():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 10, 3)).astype("float32")
    y = x[:, :, 0].mean(axis=1, keepdims=True)
    model = _model()
    model.compile("adam", "mse", precision="bf16")
    history = model.fit(x, y, epochs=4, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    pred = model.predict(x[:5], verbose=0)
    assert pred.dtype == np.float32
    model.compile("adam", "mse")  # the same weights in float32 predict nearly the same
    full = model.predict(x[:5], verbose=0)
    assert np.abs(pred - full).max() <= TOLERANCES["bf16"]["outputs"] * np.abs(full).max()
    assert np.abs(pred - full).max() > 0.0


def test_fp16_needs_a_gpu():
    model = _model()
    model.compile("adam", "mse", precision="fp16")
    with pytest.raises(ConfigError, match=r"precision='fp16' needs a GPU .* on cpu"):
        model.fit(np.zeros((4, 5, 3), "float32"), np.zeros((4, 1), "float32"), verbose=0)


def test_unknown_precision():
    with pytest.raises(ConfigError, match=r"precision must be one of '32', 'bf16', 'fp16'.*'16'"):
        _model().compile("adam", "mse", precision="16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with a gradient scaler needs a GPU")
def test_fp16_on_gpu_learns_with_the_scaler():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 10, 3)).astype("float32")
    y = x[:, :, 0].mean(axis=1, keepdims=True)
    model = _model()
    model.build((None, 10, 3))
    model.to("cuda")
    model.compile("adam", "mse", precision="fp16")
    history = model.fit(x, y, epochs=4, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    assert model.precision.scaler is not None and model.precision.scaler.get_scale() > 0
