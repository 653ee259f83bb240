"""Each cell against a direct numpy transcription of the lecture's equation, on random weights."""

import copy

import numpy as np
import pytest
import torch

from rnnkit.cells import FeedbackCell, GRUCell, LSTMCell, SimpleCell, TeacherForcedCell
from rnnkit.engine import scan

B, T, I, H = 3, 6, 4, 5


def sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def arr(p):
    return p.detach().numpy()


def run(cell, x, **kw):
    ys, state, _ = scan(cell, torch.as_tensor(x), backend="reference", **kw)
    return ys.detach().numpy(), [s.detach().numpy() for s in state]


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((B, T, I))


@pytest.mark.parametrize("act,f", [("tanh", np.tanh), ("relu", lambda a: np.maximum(a, 0)),
                                   ("sigmoid", sig), ("linear", lambda a: a),
                                   (torch.sin, np.sin)])
def test_simple_rnn_is_the_lecture_equation(x, act, f):
    # a_t = g(W_aa a_{t-1} + W_ax x_t + b_a)
    cell = SimpleCell(I, H, activation=act).double()
    W_ax, W_aa, b = arr(cell.weight_ih), arr(cell.weight_hh), arr(cell.bias)
    a = np.zeros((B, H))
    expected = []
    for t in range(T):
        a = f(a @ W_aa.T + x[:, t] @ W_ax.T + b)
        expected.append(a)
    ys, (h,) = run(cell, x)
    np.testing.assert_allclose(ys, np.stack(expected, 1), atol=1e-12)
    np.testing.assert_allclose(h, a, atol=1e-12)


@pytest.mark.parametrize("lags", [(1, 2), (1, 3), (2,), (1, 2, 4)])
def test_higher_order_states(x, lags):
    # h_t = f(A x_t + B¹ h_{t-1} + B² h_{t-2} + ...), h_{t<=0} = 0
    cell = SimpleCell(I, H, lags=lags).double()
    A, b = arr(cell.weight_ih), arr(cell.bias)
    Bs = np.split(arr(cell.weight_hh), len(lags), axis=1)
    hs = {t: np.zeros((B, H)) for t in range(-max(lags), 1)}
    for t in range(1, T + 1):
        z = x[:, t - 1] @ A.T + b
        for lag, Bk in zip(lags, Bs):
            z = z + hs[t - lag] @ Bk.T
        hs[t] = np.tanh(z)
    ys, _ = run(cell, x)
    np.testing.assert_allclose(ys, np.stack([hs[t] for t in range(1, T + 1)], 1), atol=1e-12)


def lstm_transcription(cell, x, peephole, coupled):
    """The lecture's LSTM slides, with W·[C, h, x] written as one matrix on the concatenation."""
    Wx, Wh, b = arr(cell.weight_ih), arr(cell.weight_hh), arr(cell.bias)
    names = ["f", "g", "o"] if coupled else ["i", "f", "g", "o"]
    W = {n: np.concatenate([Wh[k * H:(k + 1) * H], Wx[k * H:(k + 1) * H]], 1)
         for k, n in enumerate(names)}
    bb = {n: b[k * H:(k + 1) * H] for k, n in enumerate(names)}
    if peephole:
        prev = arr(cell.peep_prev)
        out = arr(cell.peep_out)
        if peephole == "diagonal":
            prev = np.concatenate([np.diag(p) for p in np.split(prev, len(prev) // H)], 0)
            out = np.diag(out)
        peep = {n: prev[k * H:(k + 1) * H] for k, n in enumerate(["f"] if coupled else ["i", "f"])}
        peep["o"] = out
    h, C = np.zeros((B, H)), np.zeros((B, H))
    hs = []
    for t in range(T):
        hx = np.concatenate([h, x[:, t]], 1)

        def gate(n, c, hx=hx):
            w = W[n]
            if peephole and n in peep:
                w = np.concatenate([peep[n], w], 1)
                return np.concatenate([c, hx], 1) @ w.T + bb[n]
            return hx @ w.T + bb[n]

        f_t = sig(gate("f", C))
        C_tilde = np.tanh(gate("g", None))
        if coupled:
            C_new = f_t * C + (1 - f_t) * C_tilde
        else:
            i_t = sig(gate("i", C))
            C_new = f_t * C + i_t * C_tilde
        o_t = sig(gate("o", C_new))
        C = C_new
        h = o_t * np.tanh(C)
        hs.append(h)
    return np.stack(hs, 1), h, C


@pytest.mark.parametrize("peephole", [False, "full", "diagonal"])
@pytest.mark.parametrize("coupled", [False, True])
def test_lstm_variants_are_the_lecture_equations(x, peephole, coupled):
    cell = LSTMCell(I, H, peephole=peephole, coupled=coupled).double()
    expected, h, C = lstm_transcription(cell, x, peephole, coupled)
    ys, (h_out, c_out) = run(cell, x)
    np.testing.assert_allclose(ys, expected, atol=1e-12)
    np.testing.assert_allclose(h_out, h, atol=1e-12)
    np.testing.assert_allclose(c_out, C, atol=1e-12)


def test_lstm_peephole_true_means_full():
    assert LSTMCell(I, H, peephole=True).peephole == "full"
    with pytest.raises(ValueError, match="peephole"):
        LSTMCell(I, H, peephole="both")


def test_gru_reset_before_is_the_lecture_formula(x):
    # z = σ(W_z·[h, x]), r = σ(W_r·[h, x]), h̃ = tanh(W·[r*h, x]), h = (1-z)*h + z*h̃,
    # with the lecture's W_z = -(our update weights): σ(-a) = 1 - σ(a).
    cell = GRUCell(I, H, reset_after=False, bias=False).double()
    Wx, Wh = arr(cell.weight_ih), arr(cell.weight_hh)
    blk = {n: np.concatenate([Wh[k * H:(k + 1) * H], Wx[k * H:(k + 1) * H]], 1)
           for k, n in enumerate("rzn")}
    W_z, W_r, W = -blk["z"], blk["r"], blk["n"]
    h = np.zeros((B, H))
    hs = []
    for t in range(T):
        hx = np.concatenate([h, x[:, t]], 1)
        z = sig(hx @ W_z.T)
        r = sig(hx @ W_r.T)
        h_tilde = np.tanh(np.concatenate([r * h, x[:, t]], 1) @ W.T)
        h = (1 - z) * h + z * h_tilde
        hs.append(h)
    ys, _ = run(cell, x)
    np.testing.assert_allclose(ys, np.stack(hs, 1), atol=1e-12)


def test_gru_reset_after_equation(x):
    cell = GRUCell(I, H, reset_after=True).double()
    Wx, Wh, bx, bh = (arr(p) for p in (cell.weight_ih, cell.weight_hh, cell.bias, cell.bias_hh))
    h = np.zeros((B, H))
    for t in range(T):
        gx, gh = x[:, t] @ Wx.T + bx, h @ Wh.T + bh
        r = sig(gx[:, :H] + gh[:, :H])
        z = sig(gx[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
        h = (1 - z) * n + z * h
    _, (h_out,) = run(cell, x)
    np.testing.assert_allclose(h_out, h, atol=1e-12)


@pytest.mark.parametrize("shortcut", [False, True])
def test_output_feedback_free_running(x, shortcut):
    # h_t = f(A x_t + Bⁱ h_{t-1} + Bᵒ o_{t-1}), o_t = g(C h_t [+ D x_t]), o_0 = 0
    O = 2
    cell = FeedbackCell(I, H, O, output_activation="sigmoid", shortcut=shortcut).double()
    A, Bi, b = arr(cell.weight_ih), arr(cell.weight_hh), arr(cell.bias)
    Bo, C, bo = arr(cell.weight_oh), arr(cell.weight_ho), arr(cell.bias_o)
    D = arr(cell.weight_io) if shortcut else np.zeros((O, I))
    h, o = np.zeros((B, H)), np.zeros((B, O))
    hs = []
    for t in range(T):
        h = np.tanh(x[:, t] @ A.T + h @ Bi.T + o @ Bo.T + b)
        o = sig(h @ C.T + x[:, t] @ D.T + bo)
        hs.append(h)
    ys, (h_out, o_out) = run(cell, x)
    np.testing.assert_allclose(ys, np.stack(hs, 1), atol=1e-12)
    np.testing.assert_allclose(o_out, o, atol=1e-12)


def test_teacher_forcing_feeds_the_target(x):
    O = 2
    cell = FeedbackCell(I, H, O).double()
    A, Bi, b, Bo = (arr(p) for p in (cell.weight_ih, cell.weight_hh, cell.bias, cell.weight_oh))
    y = np.random.default_rng(1).standard_normal((B, T, O))
    y_prev = np.concatenate([np.zeros((B, 1, O)), y[:, :-1]], 1)
    h = np.zeros((B, H))
    hs = []
    for t in range(T):
        h = np.tanh(x[:, t] @ A.T + h @ Bi.T + y_prev[:, t] @ Bo.T + b)
        hs.append(h)
    ys, _ = run(TeacherForcedCell(cell), np.concatenate([x, y_prev], -1))
    np.testing.assert_allclose(ys, np.stack(hs, 1), atol=1e-12)


CELLS = {
    "simple": lambda: SimpleCell(I, H),
    "relu-lags": lambda: SimpleCell(I, H, activation="relu", lags=(1, 2)),
    "linear": lambda: SimpleCell(I, H, activation="linear"),
    "lstm": lambda: LSTMCell(I, H),
    "lstm-peep-coupled": lambda: LSTMCell(I, H, peephole="full", coupled=True),
    "lstm-diag": lambda: LSTMCell(I, H, peephole="diagonal", lags=(1, 3)),
    "gru": lambda: GRUCell(I, H),
    "gru-before": lambda: GRUCell(I, H, reset_after=False, lags=(1, 2)),
    "feedback": lambda: FeedbackCell(I, H, 2, shortcut=True),
}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_gradcheck_every_cell(name):
    torch.manual_seed(0)
    cell = CELLS[name]().double()
    x = torch.randn(2, 4, I, dtype=torch.float64, requires_grad=True)
    h0 = tuple(torch.randn(2, n, dtype=torch.float64, requires_grad=True)
               for n in cell.state_sizes())
    params = [p for p in cell.parameters()]

    def f(x, *rest):
        state = rest[:len(h0)]
        ys, final, _ = scan(cell, x, state, backend="reference")
        return (ys, *final)

    assert torch.autograd.gradcheck(f, (x, *h0), eps=1e-6, atol=1e-7)
    # parameters: a copy of the cell whose parameters are gradcheck's inputs
    names = [n for n, _ in cell.named_parameters()]

    def g(*ps):
        ys, final, _ = scan(_with_params(cell, names, ps), x.detach(), backend="reference")
        return (ys, *final)

    inputs = tuple(p.detach().clone().requires_grad_() for p in params)
    assert torch.autograd.gradcheck(g, inputs, eps=1e-6, atol=1e-7)


def _with_params(cell, names, values):
    """A copy of the cell whose parameters are the given tensors (so gradcheck can vary them)."""
    clone = copy.deepcopy(cell)
    for n, v in zip(names, values):
        mod = clone
        *path, leaf = n.split(".")
        for part in path:
            mod = getattr(mod, part)
        delattr(mod, leaf)
        setattr(mod, leaf, v)
    return clone
