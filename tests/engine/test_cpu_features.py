"""What the CPU can run: torch's fused LSTM under CPU autocast needs oneDNN's support of the
autocast dtype; without it (an AVX2-only CPU, or RNNKIT_CPU_DISABLE) ``auto`` moves on to the next
kernel and an explicit request (backend="native", use_cudnn=True) raises BackendError saying why."""

import pytest
import torch

from rnnkit import layers
from rnnkit.engine import ScanSpec, cpu_features, explain
from rnnkit.errors import BackendError

AVX2_REASON = "RNNKIT_CPU_DISABLE='bf16' switches bf16 off on this CPU"


def _spec(x: torch.Tensor) -> ScanSpec:
    return ScanSpec(has_mask=False, has_recurrent_mask=False, device=x.device, dtype=x.dtype,
                    batch=x.shape[0], steps=x.shape[1])


def test_the_probe_agrees_with_torchs_own_flag():
    # torch's (private) flag for bf16 follows the CPU and ONEDNN_MAX_CPU_ISA, as the probe does
    has_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert (cpu_features.onednn_lstm_reason(torch.bfloat16) == "") == has_bf16


def test_the_switch_turns_features_off(monkeypatch):
    monkeypatch.setenv(cpu_features.DISABLE_ENV, " BF16, fp16 ")
    assert cpu_features.disabled() == {"bf16", "fp16"}
    assert cpu_features.onednn_lstm_reason(torch.bfloat16) == (
        "RNNKIT_CPU_DISABLE=' BF16, fp16 ' switches bf16 off on this CPU")
    monkeypatch.delenv(cpu_features.DISABLE_ENV)
    assert cpu_features.disabled() == set()


def test_autocast_dtype_is_read_at_the_call():
    cpu = torch.device("cpu")
    assert cpu_features.autocast_dtype(cpu) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cpu_features.autocast_dtype(cpu) == torch.bfloat16
        assert cpu_features.autocast_dtype(torch.device("meta")) is None


@pytest.mark.parametrize("make", [lambda: layers.LSTM(4, backend="native"),
                                  lambda: layers.LSTM(4, use_cudnn=True)],
                         ids=["backend", "use_cudnn"])
def test_explicit_native_lstm_under_bf16_without_support_says_why(monkeypatch, make):
    monkeypatch.setenv(cpu_features.DISABLE_ENV, "bf16")
    layer, x = make(), torch.randn(2, 5, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(BackendError) as refused:
            layer(x)
    assert str(refused.value) == f"backend 'native' cannot run LSTMCell: {AVX2_REASON}"
    layer(x)  # float32: no oneDNN bf16 needed
    assert layer.last_kernel == "native"


def test_auto_moves_on_without_support_and_takes_native_with_it(monkeypatch):
    layer, x = layers.LSTM(200, return_sequences=True), torch.randn(2, 5, 3)
    with torch.no_grad():  # inference at H=200: auto's rule puts native first
        layer(x)
        assert layer.last_kernel == "native"
        monkeypatch.setenv(cpu_features.DISABLE_ENV, "bf16")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = layer(x)
            verdicts = explain(layer.cell, _spec(x))
    chosen = [name for name, verdict in verdicts.items() if verdict.startswith("chosen")]
    assert chosen == [layer.last_kernel] and chosen[0] in ("compiled", "fused")
    assert verdicts["native"] == AVX2_REASON
    assert low.shape == (2, 5, 200)
    monkeypatch.delenv(cpu_features.DISABLE_ENV)
    if cpu_features.onednn_lstm_reason(torch.bfloat16) == "":  # this CPU has it: native again
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            layer(x)
        assert layer.last_kernel == "native"


@pytest.mark.parametrize("cell", ["GRU", "SimpleRNN"])
def test_gru_and_simple_rnn_need_no_onednn_under_autocast(monkeypatch, cell):
    monkeypatch.setenv(cpu_features.DISABLE_ENV, "bf16,fp16")
    layer, x = getattr(layers, cell)(4, backend="native"), torch.randn(2, 5, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    assert layer.last_kernel == "native"
