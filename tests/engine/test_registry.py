"""The kernel registry (engine/registry.py): auto picks the fastest kernel that runs a scan by the
measured rule (registry.NATIVE_FROM_UNITS: training and inference, crossovers in units), explain
says why each kernel is or is not taken, and an explicit backend that cannot run raises why."""

from __future__ import annotations

import re

import pytest
import torch

from helpers import CELLS, NATIVE_CELLS, input_size
from rnnkit.cells import FeedbackCell, GRUCell, LinearCell, LSTMCell, SimpleCell
from rnnkit.engine import BackendError, ScanSpec, compiled, explain, native, registry, scan, select
from rnnkit.engine.compiled import COMPILED


@pytest.mark.parametrize("cell_name,expected", [
    ("tanh", "compiled"), ("relu", "compiled"), ("lstm", "compiled"), ("gru", "compiled"),
    ("linear", "parallel"), ("peephole_full", "compiled"), ("coupled", "compiled"),
    ("gru_reset_before", "compiled"), ("feedback", "compiled"), ("feedback_shortcut", "compiled"),
    ("teacher_forced", "compiled"), ("teacher_forced_linear", "parallel"), ("elu", "fused"),
])
def test_auto_picks_the_fastest_supporting_kernel(cell_name, expected):
    """Training (the cell's weights record gradients): on CPU the measured rule
    (registry.NATIVE_FROM_UNITS) puts compiled before torch's fused op for the standard cells."""
    if expected == "compiled" and COMPILED.ops()[0] is None:
        # no C++ toolchain: the build failure is the reason compiled refuses
        expected = "native" if cell_name in NATIVE_CELLS else "fused"
    cell = CELLS[cell_name]((1,))
    x = torch.randn(2, 3, input_size(cell))
    assert scan(cell, x).kernel == expected


@pytest.mark.parametrize("cell_name,expected", [
    ("tanh", "compiled"), ("relu", "compiled"), ("lstm", "compiled"), ("lstm_nobias", "compiled"),
    ("gru", "compiled"), ("peephole_full", "compiled"),
])
def test_auto_for_inference_follows_the_rule(cell_name, expected):
    """Under no_grad the rule's inference column at H=4: compiled (its tiles) for every cell."""
    if COMPILED.ops()[0] is None:
        expected = "native" if cell_name in NATIVE_CELLS else "fused"
    cell = CELLS[cell_name]((1,))
    with torch.no_grad():
        assert scan(cell, torch.randn(2, 3, 3)).kernel == expected


def test_auto_order_follows_the_crossover_in_units(monkeypatch):
    """A crossover at H=8: native first from 8 units on, compiled below; explain says why."""
    if COMPILED.ops()[0] is None:
        pytest.skip("the compiled kernel did not build here")
    monkeypatch.setitem(registry.NATIVE_FROM_UNITS, ("GRUCell", "training"), 8)
    x = torch.randn(2, 3, 3)
    assert scan(GRUCell(3, 4), x).kernel == "compiled"
    assert scan(GRUCell(3, 8), x).kernel == "native"
    spec = ScanSpec(has_mask=False, has_recurrent_mask=False, device=x.device, dtype=x.dtype,
                    batch=2, steps=3)
    small, large = explain(GRUCell(3, 4), spec), explain(GRUCell(3, 8), spec)
    def runnable(verdicts):
        return [k for k, v in verdicts.items() if v.startswith(("chosen: ", "can run it"))]

    assert runnable(small)[:2] == ["compiled", "native"]
    assert runnable(large)[:2] == ["native", "compiled"]
    assert small["compiled"].startswith("chosen: GRUCell training on CPU at H=4: the compiled C++ "
                                        "loop is faster than torch's fused op (native) below H=8")
    assert small["native"] == "can run it; compiled comes first"
    assert large["native"].startswith("chosen: GRUCell training on CPU at H=8: torch's fused op "
                                      "(native) is the fastest from H=8 on")


def test_explain_names_what_cannot_run():
    spec = ScanSpec(has_mask=True, has_recurrent_mask=False, device=torch.device("cpu"),
                    dtype=torch.float32, batch=2, steps=3, mask_packable=True)
    verdicts = explain(LSTMCell(3, 4), spec)
    assert "O(T²)" in verdicts["native"]  # masks on CPU: native declines
    assert verdicts["parallel"] == "LSTMCell is not a linear recurrence"
    chosen = [k for k, v in verdicts.items() if v.startswith("chosen: ")]
    assert chosen == [select(LSTMCell(3, 4), spec).name]


def test_auto_falls_back_from_native_for_unpackable_masks_and_lags(monkeypatch,
                                                                  lstm_inference_on_native):
    cell = LSTMCell(3, 4)
    x = torch.randn(2, 4, 3)
    holes = torch.tensor([[True, False, True, True], [True, True, True, True]])
    loop = "compiled" if COMPILED.ops()[0] is not None else "fused"
    assert scan(cell, x, mask=holes).kernel == loop
    assert scan(LSTMCell(3, 4, lags=(1, 2)), x).kernel == loop
    packed = torch.tensor([[True, True, False, False], [True, True, True, True]])
    assert scan(cell, x, mask=packed).kernel == loop  # torch's packed backward is O(T²) on CPU
    monkeypatch.setattr(native, "PACKED_ON_CPU", True)
    with torch.no_grad():  # inference, where the (pinned) rule puts native first for LSTM
        assert scan(cell, x, mask=packed).kernel == "native"


@pytest.mark.parametrize("cell,backend,opts,reason", [
    (LSTMCell(3, 4, peephole=True), "native", {}, "peephole"),
    (LSTMCell(3, 4, coupled=True), "native", {}, "coupled"),
    (GRUCell(3, 4, reset_after=False), "native", {}, "reset_after=True"),
    (SimpleCell(3, 4, activation="elu"), "native", {}, "'elu'"),
    (SimpleCell(3, 4, lags=(1, 2)), "native", {}, "lags=(1, 2)"),
    (LSTMCell(3, 4), "native", {"recurrent_mask": torch.ones(2, 4)}, "recurrent mask"),
    (LSTMCell(3, 4), "native", {"mask": torch.tensor([[False, True, True]] * 2)}, "packed"),
    (FeedbackCell(3, 4, 2), "native", {}, "FeedbackCell"),
    (SimpleCell(3, 4), "parallel", {}, "'tanh'"),
    (LSTMCell(3, 4), "parallel", {}, "not a linear recurrence"),
    (LinearCell(3, 4), "parallel", {"recurrent_mask": torch.ones(2, 4)}, "recurrent mask"),
    (SimpleCell(3, 4, activation="softmax"), "fused", {}, "elementwise"),
    (SimpleCell(3, 4, activation=lambda z: z * 2), "fused", {}, "elementwise"),
])
def test_explicit_backend_that_cannot_run_raises_with_reason(cell, backend, opts, reason):
    with pytest.raises(BackendError, match=re.escape(reason)):
        scan(cell, torch.randn(2, 3, 3), backend=backend, **opts)


def test_inference_crossover_sends_wide_cells_to_native():
    """NATIVE_FROM_UNITS' inference column: SimpleRNN and GRU on native from H=512; LSTM on the
    compiled tiles up to their largest H and on native above it."""
    if COMPILED.ops()[0] is None:
        pytest.skip("the compiled kernel did not build here")
    spec = ScanSpec(has_mask=False, has_recurrent_mask=False, device=torch.device("cpu"),
                    dtype=torch.float32, batch=1, steps=3, requires_grad=False)
    for cell_type in (SimpleCell, GRUCell):
        assert select(cell_type(2, 256), spec).name == "compiled"
        assert select(cell_type(2, 512), spec).name == "native"
    tiles = compiled.TILE_MAX_UNITS
    assert registry.NATIVE_FROM_UNITS[("LSTMCell", "inference")] == tiles + 1
    assert select(LSTMCell(2, tiles), spec).name == "compiled"
    assert select(LSTMCell(2, tiles + 1), spec).name == "native"
