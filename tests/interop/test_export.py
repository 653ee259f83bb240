"""Export: the .onnx file run in onnxruntime, the TorchScript and torch.export programs, each
against rnnkit's own outputs on inputs of other batch sizes (and lengths, where dynamic)."""

import numpy as np
import pytest
import torch

from rnnkit import layers
from rnnkit.errors import ConfigError, NotBuiltError
from rnnkit.interop.export import onnx_max_abs_diff
from rnnkit.models import Sequential

pytest.importorskip("onnxruntime")

TOL = 1e-5  # float32, max abs difference


def _model(stack, input_shape):
    model = Sequential(stack)
    model.build(input_shape)
    with torch.no_grad():  # random biases: zeros would hide bias-layout bugs
        for name, p in model.named_parameters():
            if "bias" in name:
                p.normal_(0, 0.5)
    return model


CASES = {
    "simple_relu": lambda: _model([layers.SimpleRNN(6, activation="relu"), layers.Dense(2)],
                                  (None, None, 3)),
    "lstm_stacked": lambda: _model([layers.LSTM(5, return_sequences=True), layers.LSTM(4),
                                    layers.Dense(1)], (None, None, 3)),
    "gru_bidirectional_seq": lambda: _model(
        [layers.Bidirectional(layers.GRU(4, return_sequences=True)), layers.Dense(2)],
        (None, None, 3)),
    "lecture_masked": lambda: _model([layers.Embedding(30, 6, mask_zero=True),
                                      layers.LSTM(4, return_sequences=True), layers.GRU(3),
                                      layers.Dense(1, activation="sigmoid")], (None, None)),
}


def _float_batches():
    return [torch.randn(3, 7, 3), torch.randn(5, 11, 3)]


def _id_batches():
    out = []
    for batch, steps in ((3, 7), (5, 11)):
        ids = torch.randint(1, 30, (batch, steps))
        ids[0, 2:] = 0
        ids[-1, steps - 1:] = 0
        out.append(ids)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_matches_rnnkit_with_dynamic_batch_and_time(name, tmp_path):
    model = CASES[name]()
    path = model.export(tmp_path / "m.onnx", format="onnx")
    batches = _id_batches() if name == "lecture_masked" else _float_batches()
    for x in batches:
        assert onnx_max_abs_diff(model, path, x) <= TOL


@pytest.mark.parametrize("stack, shape, x", [
    ([layers.LSTM(4, peephole=True, return_sequences=True), layers.GRU(3, reset_after=False),
      layers.Dense(2)], (None, 6, 3), torch.randn(4, 6, 3)),
], ids=["peephole_reset_before"])
def test_onnx_on_the_reference_loop_has_the_example_length(stack, shape, x, tmp_path):
    import onnxruntime

    model = _model(stack, shape)
    path = model.export(tmp_path / "m.onnx")
    assert onnx_max_abs_diff(model, path, x) <= TOL
    assert onnxruntime.InferenceSession(str(path)).get_inputs()[0].shape == ["batch", *shape[1:]]
    assert all(getattr(layer, "backend", "auto") == "auto" for layer in model.modules())


def test_masked_bidirectional_runs_both_directions_natively_with_dynamic_time(tmp_path):
    """Both directions in one packed native call (engine.scan_layers), so the backward direction
    starts at each row's own last real step in the graph too: batch and time stay dynamic."""
    import onnxruntime

    model = _model([layers.Embedding(30, 6, mask_zero=True),
                    layers.Bidirectional(layers.LSTM(4, return_sequences=True)), layers.GRU(3),
                    layers.Dense(1)], (None, 6))
    path = model.export(tmp_path / "m.onnx")
    assert onnxruntime.InferenceSession(str(path)).get_inputs()[0].shape == ["batch", "time"]
    for ids in _id_batches():
        assert onnx_max_abs_diff(model, path, ids) <= TOL


def test_onnx_keeps_padded_steps_out(tmp_path):
    """The masked export must differ from running the padding as data."""
    model = CASES["lecture_masked"]()
    path = model.export(tmp_path / "m.onnx")
    ids = _id_batches()[0]
    import onnxruntime

    (got,) = onnxruntime.InferenceSession(str(path)).run(None, {"x": ids.numpy()})
    unmasked = model.layers[0].mask_zero = False
    assert unmasked is False
    plain = model.predict(ids.numpy(), verbose=0)
    assert np.abs(got - plain).max() > 1e-3


@pytest.mark.parametrize("fmt", ["torchscript", "torch.export"])
def test_python_free_formats(fmt, tmp_path):
    model = CASES["gru_bidirectional_seq"]()
    path = model.export(tmp_path / "m.pt2", format=fmt)
    if fmt == "torchscript":
        with pytest.warns(DeprecationWarning, match=r"torch.jit.load. is deprecated"):
            loaded = torch.jit.load(str(path))
    else:
        loaded = torch.export.load(str(path)).module()
    # TorchScript keeps the fused ops (any T); torch.export fixes T to the example's (8)
    batches = _float_batches() if fmt == "torchscript" else [torch.randn(b, 8, 3) for b in (3, 5)]
    for x in batches:
        diff = (loaded(x) - model(x)).abs().max().item()
        assert diff <= TOL


def test_export_errors(tmp_path):
    model = CASES["simple_relu"]()
    with pytest.raises(ConfigError, match=r"format must be one of .* got 'tflite'"):
        model.export(tmp_path / "m", format="tflite")
    with pytest.raises(NotBuiltError, match=r"export needs a built model"):
        Sequential([layers.LSTM(3)]).export(tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match=r"torch.export cannot trace masks from Embedding"):
        CASES["lecture_masked"]().export(tmp_path / "m.pt2", format="torch.export")


def test_torch_export_with_embedding(tmp_path):
    model = _model([layers.Embedding(30, 6), layers.LSTM(4), layers.Dense(1)], (None, 8))
    loaded = torch.export.load(str(model.export(tmp_path / "m.pt2", format="torch.export"))).module()
    x = torch.randint(0, 30, (3, 8))
    assert (loaded(x) - model(x)).abs().max().item() <= TOL
