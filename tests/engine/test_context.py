"""The engine's one context (``engine.options``): a backend preference for every scan in scope,
packed masks on CPU, and observers that see each step's state and the gates the cell's own step
computed; and ``engine.scan_layers``, which says when it cannot run layers in one call."""

import numpy as np
import pytest
import torch

from rnnkit import engine, layers
from rnnkit.diagnosis import gate_values
from rnnkit.engine import BackendError

B, T, I, H = 3, 7, 4, 5


def _built(layer):
    layer(torch.zeros(1, 2, I))
    return layer


def test_options_override_every_layers_backend_within_the_scope():
    lstm = _built(layers.LSTM(H, backend="compiled"))
    x = torch.randn(B, T, I)
    lstm(x)
    assert lstm.last_kernel == "compiled"
    with engine.options(backend="reference"):
        lstm(x)
        assert lstm.last_kernel == "reference"
        with engine.options(backend=("gpu", "fused")):  # gpu cannot run on CPU: the next one
            lstm(x)
            assert lstm.last_kernel == "fused"
        lstm(x)
        assert lstm.last_kernel == "reference"  # the outer scope again
    lstm(x)
    assert lstm.last_kernel == "compiled" and lstm.backend == "compiled"
    with engine.options(backend=("gpu",)), pytest.raises(BackendError, match=r"none of the "
                                                                              r"backends \('gpu',\)"):
        lstm(x)


def test_packed_masks_on_cpu_only_within_the_scope():
    gru = _built(layers.GRU(H, backend="native"))
    x, mask = torch.randn(B, T, I), torch.arange(T) < torch.tensor([[T], [4], [2]])
    with pytest.raises(BackendError, match="packed-sequence backward costs O"):
        gru(x, mask=mask)  # on CPU native declines masks (O(T²) packed backward)
    with engine.options(packed_on_cpu=True):
        gru(x, mask=mask)
        assert gru.last_kernel == "native"
    with pytest.raises(BackendError, match="packed-sequence backward costs O"):
        gru(x, mask=mask)


def test_an_observer_sees_the_gates_the_lstm_step_computed():
    lstm = _built(layers.LSTM(H, backend="compiled"))
    x = torch.randn(B, T, I)
    recorder = engine.Recorder(lstm.cell)
    with torch.no_grad(), engine.options(observe=recorder):
        out = lstm(x)
    assert lstm.last_kernel == "reference" and sorted(recorder.gates) == ["f", "i", "o"]
    cell, h, c = lstm.cell, torch.zeros(B, H), torch.zeros(B, H)
    for t in range(T):  # the equations, written here
        z = x[:, t] @ cell.weight_ih.t() + h @ cell.weight_hh.t() + cell.bias
        i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
        i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
        c = f * c + i * torch.tanh(g)
        h = o * torch.tanh(c)
        for name, want in (("i", i), ("f", f), ("o", o)):
            torch.testing.assert_close(recorder.gates[name][t], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(recorder.hidden[-1], out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("go_backwards, dilation", [(True, 1), (False, 3), (True, 2)])
def test_recorded_steps_come_back_in_time_order(go_backwards, dilation):
    gru = _built(layers.GRU(H, return_sequences=True, go_backwards=go_backwards,
                            dilation=dilation))
    x = torch.randn(B, T, I)
    recorder = engine.Recorder(gru.cell)
    with torch.no_grad(), engine.options(observe=recorder):
        out = gru(x)  # in time order
    torch.testing.assert_close(recorder.sequence(recorder.hidden), out.flip(1) if go_backwards
                               else out)
    assert recorder.sequence(recorder.gates["z"]).shape == (B, T, H)


def test_gate_values_with_dilation_are_those_of_the_interleaved_recurrences():
    dilated = _built(layers.GRU(H, dilation=2))
    plain = _built(layers.GRU(H))
    plain.set_weights(dilated.get_weights())
    x = torch.randn(B, 8, I)
    got = gate_values(dilated, x)
    for start in (0, 1):  # steps start, start + 2, ... form one ordinary recurrence
        want = gate_values(plain, x[:, start::2])
        for name in ("r", "z"):
            np.testing.assert_allclose(got[name][:, start::2], want[name], rtol=1e-5, atol=1e-6)


def test_scan_layers_says_why_it_cannot_run_layers_in_one_call(lstm_inference_on_native):
    cells = [_built(layers.LSTM(H)).cell, _built(layers.LSTM(H)).cell]
    x = torch.randn(B, T, I)
    states = [cell.zero_state(B, x) for cell in cells]
    # training on CPU: auto runs each LSTM on the compiled loop (registry.NATIVE_FROM_UNITS),
    # so one native call would change the kernel: the layers run one by one
    assert engine.scan_layers_reason(cells, x) == (
        "auto runs LSTMCell on compiled: " + engine.registry.auto_order(
            cells[0], engine.ScanSpec(has_mask=False, has_recurrent_mask=False, device=x.device,
                                      dtype=x.dtype, batch=B, steps=T))[1])
    assert engine.scan_layers(cells, x, states, bidirectional=True) is None
    with torch.no_grad():  # inference: auto runs LSTM on native (pinned), and so may the one call
        assert engine.scan_layers_reason(cells, x, backend="auto") == ""
        out = engine.scan_layers(cells, x, states, bidirectional=True)
        assert out.kernel == "native" and out.outputs.shape == (B, T, 2 * H)
        assert "runs on the compiled kernel" in engine.scan_layers_reason(cells, x,
                                                                           backend="compiled")
        assert engine.scan_layers(cells, x, states, backend=["auto", "compiled"]) is None
        assert engine.scan_layers_reason(cells, x, exclude=("native",)) == (
            "LSTMCell may not run on native (exclude=('native',): a layer's use_cudnn=False)")
        assert engine.scan_layers(cells, x, states, exclude=[(), ("native",)]) is None
        assert "(B, T) = (3, 7) bool" in engine.scan_layers_reason(cells, x, torch.ones(B, T))
        with engine.options(observe=engine.Recorder(cells[0])):
            assert "observes the steps" in engine.scan_layers_reason(cells, x)
    assert engine.scan_layers(cells, x, states, backend="native").kernel == "native"
    with engine.options(backend=("native", "reference")):  # a scope's preference decides
        assert engine.scan_layers(cells, x, states, backend="compiled").kernel == "native"


def test_scan_layers_asks_what_each_layer_would_run_in_training(lstm_inference_on_native):
    """Stacked layers: a later layer's input carries a gradient when an earlier layer trains, so
    it is judged as training even when its own weights and state are frozen."""
    first, second = _built(layers.LSTM(H)).cell, _built(layers.LSTM(H)).cell
    first.requires_grad_(False)
    x = torch.randn(B, T, I)
    with engine.options(backend=("native",)):  # whatever auto thinks: only the spec matters
        assert engine.scan_layers_reason([first, second], x) == ""
    assert "auto runs LSTMCell on compiled" in engine.scan_layers_reason([first, second], x)
    second.requires_grad_(False)
    assert engine.scan_layers_reason([first, second], x) == ""  # nothing to train: inference
    first.requires_grad_(True)
    assert "auto runs LSTMCell on compiled" in engine.scan_layers_reason([first, second], x)


def test_a_hooked_layer_keeps_the_wrapper_on_the_separate_path(monkeypatch, lstm_inference_on_native):
    bi = layers.Bidirectional(layers.LSTM(H, return_sequences=True))
    bi(torch.zeros(1, 2, I))
    together, run_layers = [], engine.native.run_layers
    monkeypatch.setattr(engine.native, "run_layers", lambda cells, *a, **k: together.append(
        len(cells)) or run_layers(cells, *a, **k))
    x = torch.randn(B, T, I)
    seen = []
    handle = bi.backward_layer.register_forward_hook(lambda *args: seen.append(1))
    with torch.no_grad():  # inference: auto runs LSTM on native (pinned), so the one call is open
        bi(x)
        assert seen == [1] and bi.backward_layer.hooked and 2 not in together
        handle.remove()
        bi(x)
    assert seen == [1] and not bi.backward_layer.hooked and together[-1] == 2


def test_step_and_stepper_follow_the_scope():
    lstm = _built(layers.LSTM(H))
    x_t = torch.randn(B, I)
    assert engine.step(lstm.cell, x_t).kernel == "native"  # auto: torch's cell op
    with engine.options(backend=("gpu", "fused")):
        assert engine.step(lstm.cell, x_t).kernel == "fused"
        assert engine.stepper(lstm.cell).kernel == "fused"
    recorder = engine.Recorder(lstm.cell)
    with torch.no_grad(), engine.options(observe=recorder):
        y, _, kernel = engine.step(lstm.cell, x_t)
    assert kernel == "reference" and sorted(recorder.gates) == ["f", "i", "o"]
    torch.testing.assert_close(recorder.hidden[-1], y)
    torch.testing.assert_close(y, engine.step(lstm.cell, x_t).output, rtol=1e-5, atol=1e-6)
