"""The fused native path of Bidirectional and Stacked: one torch._VF call for both directions or
for every layer, against the layers run one by one (float64 to 1e-10, float32 to 1e-5): outputs,
returned states and the gradients of the input, the initial states and every parameter, under
random upstream gradients into every output. Configurations it cannot run take the old path.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit import layers
from rnnkit.cells import LSTMCell
from rnnkit.engine import BackendError, native, registry, scan
from rnnkit.layers import wrappers

B, T, I, H = 3, 6, 4, 5
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
KINDS = {
    "lstm": lambda **kw: layers.LSTM(H, **kw),
    "gru": lambda **kw: layers.GRU(H, **kw),
    "tanh": lambda **kw: layers.SimpleRNN(H, **kw),
    "relu": lambda **kw: layers.SimpleRNN(H, activation="relu", **kw),
}
MERGE_MODES = ["concat", "sum", "mul", "ave", None]


@pytest.fixture(autouse=True)
def packed_on_cpu(monkeypatch):
    """Masks take the packed path here, as on GPU (on CPU the native kernel declines them)."""
    monkeypatch.setattr(native, "PACKED_ON_CPU", True)


@pytest.fixture(autouse=True)
def native_first(monkeypatch):
    """auto puts native first for every standard cell, as on GPU (on CPU the measured rule puts
    the compiled loop first for training, and then the fused path is not taken)."""
    monkeypatch.setattr(registry, "NATIVE_FROM_UNITS", dict.fromkeys(registry.NATIVE_FROM_UNITS, 1))


@pytest.fixture
def fused_calls(monkeypatch):
    """The number of cells of each native call that ran more than one (fused) cell."""
    calls: list[int] = []
    run_layers = native.run_layers

    def spy(cells, *args, **kwargs):
        if len(cells) > 1:
            calls.append(len(cells))
        return run_layers(cells, *args, **kwargs)

    monkeypatch.setattr(native, "run_layers", spy)
    return calls


@contextlib.contextmanager
def separate_path():
    """The wrappers as they ran before the fused path: every layer called on its own."""
    with pytest.MonkeyPatch.context() as mp:
        for cls in (wrappers.Bidirectional, wrappers.Stacked):
            mp.setattr(cls, "run_together", lambda self, *args: None)
        yield


def post_padding(lengths, steps: int = T) -> torch.Tensor:
    return torch.arange(steps) < torch.tensor(lengths)[:, None]  # (B, T) bool


def flat(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, list) else [out]


def run_with_grads(model, x, mask=None, initial_state=None) -> list[torch.Tensor]:
    """Every output, then the gradients of x, the initial states and every parameter."""
    kwargs = {} if initial_state is None else {"initial_state": initial_state}
    outs = flat(model(x, mask=mask, **kwargs))
    gen = torch.Generator().manual_seed(1)
    ups = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in outs]
    loss = sum((t * u).sum() for t, u in zip(outs, ups, strict=True))
    inputs = [x, *(initial_state or []), *model.parameters()]
    grads = torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True)
    return [*outs, *grads]


def assert_all_close(got, expected, dtype=torch.float64):
    assert len(got) == len(expected)
    tol = TOL[dtype]
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        torch.testing.assert_close(g, e, atol=tol, rtol=tol, msg=lambda m, i=i: f"tensor {i}: {m}")


def fused_against_separate(model, x, mask=None, initial_state=None, dtype=torch.float64):
    """Runs ``model`` on both paths (the fused one must run) and compares everything."""
    got = run_with_grads(model, x, mask, initial_state)
    assert model.last_kernel == "native"
    with separate_path():
        expected = run_with_grads(model, x, mask, initial_state)
    assert_all_close(got, expected, dtype)


def inputs(kind: str, batch: int = B, steps: int = T, dtype=torch.float64, init: bool = False):
    x = torch.randn(batch, steps, I, dtype=dtype, requires_grad=True)
    count = 4 if kind == "lstm" else 2  # (h, c) or h, per direction
    states = [torch.randn(batch, H, dtype=dtype, requires_grad=True) for _ in range(count)]
    return x, (states if init else None)


def bidirectional(kind, dtype=torch.float64, merge_mode="concat", **kw):
    bi = layers.Bidirectional(KINDS[kind](**kw), merge_mode=merge_mode)
    bi.ensure_built((None, None, I))
    return bi.to(dtype)


# -- Bidirectional ------------------------------------------------------------------------------
@pytest.mark.parametrize("return_state", [True, False])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("merge_mode", MERGE_MODES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_bidirectional_fused_matches_separate(kind, merge_mode, return_sequences, return_state,
                                              fused_calls):
    bi = bidirectional(kind, merge_mode=merge_mode, return_sequences=return_sequences,
                       return_state=return_state)
    x, init = inputs(kind, init=True)
    fused_against_separate(bi, x, post_padding([3, 6, 1]), init)
    assert fused_calls == [2]


CASES = {  # name -> (batch, steps, lengths of a post-padding mask or None, initial state)
    "plain": (B, T, None, False),
    "initial_state": (B, T, None, True),
    "mask": (B, T, [2, 6, 4], True),
    "mask_zero_state": (B, T, [5, 2, 6], False),
    "all_real_mask": (B, T, [6, 6, 6], True),
    "batch1_mask": (1, T, [4], True),
    "steps1_mask": (B, 1, [1, 1, 1], True),
    "batch1_steps1": (1, 1, None, False),
}


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", list(KINDS))
def test_bidirectional_fused_cases(kind, case, return_sequences):
    batch, steps, lengths, init = CASES[case]
    bi = bidirectional(kind, return_sequences=return_sequences, return_state=True)
    x, states = inputs(kind, batch, steps, init=init)
    mask = None if lengths is None else post_padding(lengths, steps)
    fused_against_separate(bi, x, mask, states)


@pytest.mark.parametrize("kind", list(KINDS))
def test_bidirectional_fused_float32_without_bias(kind):
    bi = bidirectional(kind, torch.float32, use_bias=False, return_sequences=True, return_state=True)
    x, init = inputs(kind, dtype=torch.float32, init=True)
    fused_against_separate(bi, x, post_padding([6, 3, 1]), init, dtype=torch.float32)


def test_bidirectional_fused_learned_initial_state_and_eval_dropout(fused_calls):
    bi = bidirectional("lstm", return_sequences=True, learn_initial_state=True,
                       dropout=0.3, recurrent_dropout=0.3)
    with torch.no_grad():
        for p in bi.parameters():
            p.add_(torch.randn_like(p))  # the learned h0, c0 nonzero too
    bi.eval()  # dropout is off: nothing is drawn
    x, _ = inputs("lstm")
    fused_against_separate(bi, x, post_padding([6, 3, 1]))
    assert fused_calls == [2]


def test_bidirectional_explicit_native_runs_a_masked_backward_direction(fused_calls):
    # Alone, a go_backwards layer cannot run natively under a mask (reversed, it is
    # pre-padding); torch's reverse direction of a packed sequence can.
    bi = bidirectional("gru", return_sequences=True, backend="native")
    x, _ = inputs("gru")
    mask = post_padding([6, 3, 1])
    with separate_path(), pytest.raises(BackendError, match="packed sequence"):
        bi(x, mask=mask)
    got = run_with_grads(bi, x, mask)
    assert fused_calls == [2]
    bi.forward_layer.backend = bi.backward_layer.backend = "auto"
    with separate_path():
        expected = run_with_grads(bi, x, mask)
    assert_all_close(got, expected)


def test_bidirectional_fused_equals_torch_nn():
    bi = bidirectional("gru", return_sequences=True)
    twin = torch.nn.GRU(I, H, batch_first=True, bidirectional=True, dtype=torch.float64)
    with torch.no_grad():
        for suffix, layer in (("", bi.forward_layer), ("_reverse", bi.backward_layer)):
            getattr(twin, "weight_ih_l0" + suffix).copy_(layer.cell.weight_ih)
            getattr(twin, "weight_hh_l0" + suffix).copy_(layer.cell.weight_hh)
            getattr(twin, "bias_ih_l0" + suffix).copy_(layer.cell.bias)
            getattr(twin, "bias_hh_l0" + suffix).copy_(layer.cell.bias_hh)
    x, _ = inputs("gru")
    torch.testing.assert_close(bi(x), twin(x)[0], atol=1e-10, rtol=0)


# -- Stacked ------------------------------------------------------------------------------------
def stacked(kind, depth: int, return_sequences: bool, return_state: bool = True, **kw):
    make = KINDS[kind]
    stack = layers.Stacked([make(return_sequences=True, **kw) for _ in range(depth - 1)]
                           + [make(return_sequences=return_sequences, return_state=return_state,
                                   **kw)])
    stack.ensure_built((None, None, I))
    return stack.to(torch.float64)


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("case", ["plain", "mask", "batch1_mask", "steps1_mask"])
@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("kind", list(KINDS))
def test_stacked_fused_matches_separate(kind, depth, case, return_sequences, fused_calls):
    batch, steps, lengths, _ = CASES[case]
    stack = stacked(kind, depth, return_sequences)
    x, _ = inputs(kind, batch, steps)
    mask = None if lengths is None else post_padding(lengths, steps)
    got = run_with_grads(stack, x, mask)
    assert fused_calls == [depth]
    assert all(layer.last_kernel == "native" for layer in stack.layers)
    with separate_path():
        expected = run_with_grads(stack, x, mask)
    assert_all_close(got, expected)


def test_stacked_template_depth_without_bias(fused_calls):
    stack = layers.Stacked(layers.LSTM(H, use_bias=False), depth=2)
    stack.ensure_built((None, None, I))
    stack.double()
    x, _ = inputs("lstm")
    got = run_with_grads(stack, x, post_padding([1, 6, 2]))
    assert fused_calls == [2]
    with separate_path():
        expected = run_with_grads(stack, x, post_padding([1, 6, 2]))
    assert_all_close(got, expected)


def test_run_layers_two_bidirectional_layers_equal_torch_nn():
    twin = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True,
                         dtype=torch.float64)
    cells = [LSTMCell(size, H).double() for size in (I, I, 2 * H, 2 * H)]  # torch's order
    with torch.no_grad():
        for k, cell in enumerate(cells):
            suffix = f"l{k // 2}" + ("_reverse" if k % 2 else "")
            getattr(twin, f"weight_ih_{suffix}").copy_(cell.weight_ih)
            getattr(twin, f"weight_hh_{suffix}").copy_(cell.weight_hh)
            getattr(twin, f"bias_ih_{suffix}").copy_(cell.bias)
            getattr(twin, f"bias_hh_{suffix}").zero_()
    x, _ = inputs("lstm")
    h0, c0 = torch.randn(2, 4, B, H, dtype=torch.float64)  # (L·D, B, H) each
    lengths = [6, 3, 1]
    ys, finals = native.run_layers(cells, x, list(zip(h0, c0)), post_padding(lengths),
                                   bidirectional=True)
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    out, (hn, cn) = twin(packed, (h0, c0))
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    assert_all_close([ys, *[s for final in finals for s in final]],
                     [out, *[s for k in range(4) for s in (hn[k], cn[k])]])


# -- what the fused path does not take ----------------------------------------------------------
def reference_layer(layer, x, mask):
    """What an RNN layer returns (return_sequences, return_state), by the reference kernel."""
    ys, final, _ = scan(layer.cell, x, mask=mask, reverse=layer.go_backwards,
                        dilation=layer.dilation, backend="reference")
    if mask is not None:
        ys = ys * mask[..., None].to(ys.dtype)
    seq = ys.flip(1) if layer.go_backwards else ys
    return [seq if layer.return_sequences else final[0], *final]


def reference_bidirectional(bi, x, mask):
    """merge_mode='concat', return_sequences=True, return_state=True."""
    fwd, *states_f = reference_layer(bi.forward_layer, x, mask)
    bwd, *states_b = reference_layer(bi.backward_layer, x, mask)
    return [torch.cat([fwd, bwd.flip(1)], dim=-1), *states_f, *states_b]


SEQ_STATE = {"return_sequences": True, "return_state": True}
PRE_PADDING = post_padding([6, 3, 1]).flip(1)
HOLES = torch.tensor([[True, False, True, True, False, True]] * B)
INELIGIBLE_BIDIRECTIONAL = {
    "peephole": (lambda: layers.LSTM(H, peephole=True, **SEQ_STATE), None),
    "coupled": (lambda: layers.LSTM(H, coupled=True, **SEQ_STATE), None),
    "hard_sigmoid": (lambda: layers.LSTM(H, recurrent_activation="hard_sigmoid", **SEQ_STATE), None),
    "reset_before": (lambda: layers.GRU(H, reset_after=False, **SEQ_STATE), None),
    "elu": (lambda: layers.SimpleRNN(H, activation="elu", **SEQ_STATE), None),
    "lags": (lambda: layers.SimpleRNN(H, lags=(1, 2), **SEQ_STATE), None),
    "go_backwards_forward": (lambda: layers.GRU(H, go_backwards=True, **SEQ_STATE), None),
    "stateful": (lambda: layers.GRU(H, stateful=True, **SEQ_STATE), None),
    "backend_fused": (lambda: layers.LSTM(H, backend="fused", **SEQ_STATE), None),
    "pre_padding_mask": (lambda: layers.LSTM(H, **SEQ_STATE), PRE_PADDING),
    "mask_with_holes": (lambda: layers.GRU(H, **SEQ_STATE), HOLES),
    "float_mask": (lambda: layers.GRU(H, **SEQ_STATE), post_padding([6, 3, 1]).double()),
}


@pytest.mark.parametrize("case", list(INELIGIBLE_BIDIRECTIONAL))
def test_bidirectional_ineligible_takes_separate_path(case, fused_calls):
    make, mask = INELIGIBLE_BIDIRECTIONAL[case]
    bi = layers.Bidirectional(make())
    bi.ensure_built((None, None, I))
    bi.double()
    x, _ = inputs("gru")
    got = bi(x, mask=mask)
    assert fused_calls == []
    expected = reference_bidirectional(bi, x, None if mask is None else mask.bool())
    assert_all_close(got, expected)


def test_bidirectional_other_backward_layer_takes_separate_path(fused_calls):
    bi = layers.Bidirectional(layers.GRU(H, **SEQ_STATE),
                              backward_layer=layers.GRU(H + 1, go_backwards=True, **SEQ_STATE))
    bi.ensure_built((None, None, I))
    bi.double()
    x, _ = inputs("gru")
    got = bi(x, mask=post_padding([6, 3, 1]))
    assert fused_calls == [] and got[0].shape == (B, T, 2 * H + 1)
    assert_all_close(got, reference_bidirectional(bi, x, post_padding([6, 3, 1])))


def test_bidirectional_hooks_see_their_layer(fused_calls):
    bi = bidirectional("lstm", **SEQ_STATE)
    seen = []
    bi.backward_layer.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    x, _ = inputs("lstm")
    got = bi(x)
    assert fused_calls == [] and len(seen) == 1
    assert_all_close(got, reference_bidirectional(bi, x, None))


def test_bidirectional_dropout_in_training_draws_per_layer(fused_calls):
    bi = bidirectional("lstm", return_sequences=True, dropout=0.5, recurrent_dropout=0.5)
    x, _ = inputs("lstm")
    torch.manual_seed(7)
    got = bi(x, training=True)
    assert fused_calls == []
    torch.manual_seed(7)
    fwd, bwd = bi.forward_layer(x, training=True), bi.backward_layer(x, training=True)
    assert_all_close([got], [torch.cat([fwd, bwd.flip(1)], dim=-1)])


def reference_stack(stack, x, mask):
    for layer in stack.layers:
        out = reference_layer(layer, x, mask)
        x, mask = out[0], layer.compute_mask(x, mask)
    return out[0]


INELIGIBLE_STACKED = {
    "mixed_types": (lambda: [layers.LSTM(H, return_sequences=True), layers.GRU(H)], None),
    "mixed_units": (lambda: [layers.GRU(H, return_sequences=True), layers.GRU(H + 1)], None),
    "go_backwards": (lambda: [layers.GRU(H, return_sequences=True, go_backwards=True),
                              layers.GRU(H)], None),
    "one_layer": (lambda: [layers.GRU(H)], None),
    "peephole": (lambda: [layers.LSTM(H, return_sequences=True, peephole="diagonal"),
                          layers.LSTM(H, peephole="diagonal")], None),
    "mask_with_holes": (lambda: [layers.GRU(H, return_sequences=True), layers.GRU(H)], HOLES),
    "dilation": (lambda: [layers.GRU(H, return_sequences=True, dilation=2), layers.GRU(H)], None),
}


@pytest.mark.parametrize("case", list(INELIGIBLE_STACKED))
def test_stacked_ineligible_takes_separate_path(case, fused_calls):
    make, mask = INELIGIBLE_STACKED[case]
    stack = layers.Stacked(make())
    stack.ensure_built((None, None, I))
    stack.double()
    x, _ = inputs("gru")
    got = stack(x, mask=mask)
    assert fused_calls == []
    torch.testing.assert_close(got, reference_stack(stack, x, mask), atol=1e-10, rtol=1e-10)


def test_stacked_with_a_dense_layer_takes_separate_path(fused_calls):
    stack = layers.Stacked([layers.GRU(H, return_sequences=True), layers.Dense(2)])
    stack.ensure_built((None, None, I))
    stack.double()
    x, _ = inputs("gru")
    got = stack(x)
    assert fused_calls == []
    first, dense = stack.layers
    torch.testing.assert_close(got, dense(reference_layer(first, x, None)[0]), atol=1e-10,
                               rtol=1e-10)


def test_on_cpu_masked_wrappers_keep_the_loop_kernels(fused_calls, monkeypatch):
    """torch's packed backward is O(T²) on CPU: masked layers run on the loop kernels there."""
    monkeypatch.setattr(native, "PACKED_ON_CPU", False)
    model = layers.Bidirectional(layers.LSTM(H, return_sequences=True))
    x = torch.randn(B, T, I, dtype=torch.float64)
    model(x.float(), mask=post_padding([6, 4, 2]))
    assert fused_calls == []
    assert model.last_kernel in ("compiled", "fused")
    model(x.float())
    assert fused_calls == [2]
