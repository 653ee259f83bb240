"""Recurrent layers: equal to torch.nn with copied weights, masks, wrappers, Keras weights, errors."""

import numpy as np
import pytest
import torch

from rnnkit import layers
from rnnkit.engine import scan
from rnnkit.errors import BackendError, ConfigError, ShapeError

B, T, I, H = 4, 7, 3, 5
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def torch_twin(layer, kind, dtype):
    """torch.nn.RNN/LSTM/GRU holding the rnnkit layer's weights."""
    cls = {"simple": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    kw = {"nonlinearity": "tanh"} if kind == "simple" else {}
    twin = cls(I, H, batch_first=True, **kw).to(dtype)
    cell = layer.cell
    with torch.no_grad():
        twin.weight_ih_l0.copy_(cell.weight_ih)
        twin.weight_hh_l0.copy_(cell.weight_hh)
        twin.bias_ih_l0.copy_(cell.bias)
        twin.bias_hh_l0.copy_(cell.bias_hh if kind == "gru" else torch.zeros_like(cell.bias))
    return twin


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["simple", "lstm", "gru"])
def test_layers_equal_torch_nn(kind, dtype):
    cls = {"simple": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}[kind]
    layer = cls(H, return_sequences=True, return_state=True)
    x = torch.randn(B, T, I, dtype=dtype)
    out, *states = layer(x)
    twin = torch_twin(layer, kind, dtype)
    ref, ref_state = twin(x)
    ref_states = list(ref_state) if kind == "lstm" else [ref_state]
    assert out.dtype == dtype
    torch.testing.assert_close(out, ref, atol=TOL[dtype], rtol=0)
    for s, r in zip(states, ref_states):
        torch.testing.assert_close(s, r[0], atol=TOL[dtype], rtol=0)


def test_keras_initial_weights():
    lstm = layers.LSTM(H)
    lstm(torch.randn(2, 3, I))
    bias = lstm.cell.bias.detach()
    assert torch.all(bias[H:2 * H] == 1) and torch.all(bias[:H] == 0)  # unit_forget_bias
    w = lstm.cell.weight_hh.detach()  # orthogonal: (4H, H) with orthonormal columns
    torch.testing.assert_close(w.t() @ w, torch.eye(H), atol=1e-5, rtol=0)


def test_gru_keras_weight_layout_follows_keras_formula():
    """get_weights gives Keras's (z, r, h) layout: a numpy transcription of Keras's GRU agrees."""
    layer = layers.GRU(H, reset_after=True)
    x = torch.randn(B, T, I, dtype=torch.float64)
    layer(x.float())
    layer.double()
    kernel, rec, bias = layer.get_weights()
    assert kernel.shape == (I, 3 * H) and rec.shape == (H, 3 * H) and bias.shape == (2, 3 * H)
    xn, h = x.numpy(), np.zeros((B, H))
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    for t in range(T):
        mx = xn[:, t] @ kernel + bias[0]
        mh = h @ rec + bias[1]
        z = sig(mx[:, :H] + mh[:, :H])
        r = sig(mx[:, H:2 * H] + mh[:, H:2 * H])
        hh = np.tanh(mx[:, 2 * H:] + r * mh[:, 2 * H:])
        h = z * h + (1 - z) * hh
    np.testing.assert_allclose(layer(x).detach().numpy(), h, atol=1e-10)


@pytest.mark.parametrize("make", [
    lambda: layers.SimpleRNN(H), lambda: layers.LSTM(H, peephole=True),
    lambda: layers.GRU(H, reset_after=False), lambda: layers.LSTM(H, coupled=True, lags=(1, 2)),
    lambda: layers.SimpleRNN(H, output_units=2, shortcut=True, learn_initial_state=True),
    lambda: layers.SimpleRNN(H, output_units=2, feedback=True),
])
def test_set_weights_round_trip(make):
    a, b = make(), make()
    x = torch.randn(B, T, I)
    a(x), b(x)
    b.set_weights(a.get_weights())
    torch.testing.assert_close(a(x), b(x))
    with pytest.raises(ShapeError, match="expected"):
        b.set_weights(a.get_weights()[:-1])


def test_linear_dynamical_system():
    # h_t = A x_t + B h_{t-1}, o_t = C h_t
    layer = layers.SimpleRNN(H, activation="linear", output_units=2, return_sequences=True,
                             use_bias=False)
    x = torch.randn(B, T, I, dtype=torch.float64)
    layer(x.float())
    layer.double()
    A, Bm = layer.cell.weight_ih.detach(), layer.cell.weight_hh.detach()
    C, c0 = layer.readout.weight_ho.detach(), layer.readout.bias_o.detach()
    h, outs = torch.zeros(B, H, dtype=torch.float64), []
    for t in range(T):
        h = x[:, t] @ A.t() + h @ Bm.t()
        outs.append(h @ C.t() + c0)
    torch.testing.assert_close(layer(x), torch.stack(outs, 1), atol=1e-10, rtol=0)


def test_shallow_rnn_output_layer_and_shortcut():
    # o_t = g(C h_t + D x_t)
    layer = layers.SimpleRNN(H, output_units=2, output_activation="sigmoid", shortcut=True,
                             return_sequences=True)
    x = torch.randn(B, T, I)
    o = layer(x)
    hidden = layers.SimpleRNN(H, return_sequences=True)
    hidden(x)
    hidden.set_weights(layer.get_weights()[:3])
    r = layer.readout
    expected = torch.sigmoid(hidden(x) @ r.weight_ho.t() + x @ r.weight_io.t() + r.bias_o)
    torch.testing.assert_close(o, expected)


def test_teacher_forcing_only_in_training():
    layer = layers.SimpleRNN(H, output_units=2, teacher_forcing=True, return_sequences=True)
    x, y = torch.randn(B, T, I), torch.randn(B, T, 2)
    layer(x)
    layer.eval()
    free = layer(x, targets=y)
    layer.train()
    forced = layer(x, targets=y)
    assert not torch.allclose(free, forced)
    # forcing with the model's own free-running outputs reproduces the free run
    torch.testing.assert_close(layer(x, targets=free.detach()), free, atol=1e-6, rtol=0)
    with pytest.raises(ShapeError, match="targets of shape"):
        layer(x, targets=y[:, :, :1])


def pad(seqs, padding):
    """Batch variable-length (t, I) tensors with zeros; mask True on real steps."""
    n = max(len(s) for s in seqs)
    x = torch.zeros(len(seqs), n, I, dtype=seqs[0].dtype)
    mask = torch.zeros(len(seqs), n, dtype=torch.bool)
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if padding == "post" else slice(n - len(s), n)
        x[i, sl], mask[i, sl] = s, True
    return x, mask


MASKED = {
    "simple": lambda: layers.SimpleRNN(H, return_state=True),
    "lstm": lambda: layers.LSTM(H, return_state=True),
    "gru": lambda: layers.GRU(H, return_state=True),
    "lstm-peep-back": lambda: layers.LSTM(H, peephole=True, go_backwards=True, return_state=True),
    "gru-lags-dilated": lambda: layers.GRU(H, lags=(1, 2), dilation=2, return_state=True),
    "simple-readout": lambda: layers.SimpleRNN(H, output_units=2, shortcut=True,
                                               return_state=True),
    "feedback-back": lambda: layers.SimpleRNN(H, output_units=2, feedback=True,
                                              go_backwards=True, return_state=True),
}


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("name", sorted(MASKED))
def test_masked_batch_equals_each_sequence_alone(name, padding):
    layer = MASKED[name]()
    seqs = [torch.randn(n, I, dtype=torch.float64) for n in (7, 3, 5, 1)]
    x, mask = pad(seqs, padding)
    layer(x.float())
    layer.double()
    out, *states = layer(x, mask=mask)
    for i, s in enumerate(seqs):
        alone, *alone_states = layer(s[None])
        torch.testing.assert_close(out[i], alone[0], atol=1e-10, rtol=0)
        for a, b in zip(states, alone_states):
            torch.testing.assert_close(a[i], b[0], atol=1e-10, rtol=0)


def test_masked_steps_repeat_the_last_output_or_zero_with_zero_output_for_mask():
    # Keras's default (zero_output_for_mask=False) repeats the previous output at masked steps
    layer = layers.LSTM(H, return_sequences=True)
    x, mask = pad([torch.randn(5, I), torch.randn(2, I)], "post")
    out = layer(x, mask=mask)
    assert torch.all(out[1, :2] != 0)
    assert torch.equal(out[1, 2:], out[1, 1:2].expand(3, -1))
    zeroed = layers.LSTM(H, return_sequences=True, zero_output_for_mask=True)
    zeroed(x)
    zeroed.set_weights(layer.get_weights())
    out0 = zeroed(x, mask=mask)
    assert torch.all(out0[1, 2:] == 0) and torch.equal(out0[1, :2], out[1, :2])


def test_dilation_is_interleaved_recurrences():
    layer = layers.LSTM(H, dilation=3, return_sequences=True)
    x = torch.randn(B, 10, I)
    out = layer(x)
    plain = layers.LSTM(H, return_sequences=True)
    plain(x)
    plain.set_weights(layer.get_weights())
    for j in range(3):
        torch.testing.assert_close(out[:, j::3], plain(x[:, j::3]))


def test_go_backwards_returns_processing_order():
    fwd = layers.GRU(H, return_sequences=True)
    back = layers.GRU(H, return_sequences=True, go_backwards=True)
    x = torch.randn(B, T, I)
    fwd(x), back(x)
    back.set_weights(fwd.get_weights())
    torch.testing.assert_close(back(x), fwd(x.flip(1)))


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_merges_forward_and_reversed(mode):
    bi = layers.Bidirectional(layers.LSTM(H, return_sequences=True), merge_mode=mode)
    x = torch.randn(B, T, I)
    out = bi(x)
    f = bi.forward_layer(x)
    b = bi.backward_layer(x).flip(1)
    expected = {"concat": torch.cat([f, b], -1), "sum": f + b, "mul": f * b,
                "ave": (f + b) / 2, None: [f, b]}[mode]
    if mode is None:
        torch.testing.assert_close(out[0], expected[0])
        torch.testing.assert_close(out[1], expected[1])
    else:
        torch.testing.assert_close(out, expected)
    plain = layers.LSTM(H, return_sequences=True)
    plain(x)
    plain.set_weights(bi.backward_layer.get_weights())
    torch.testing.assert_close(b, plain(x.flip(1)).flip(1))


def test_bidirectional_params_and_states():
    bi = layers.Bidirectional(layers.GRU(32, return_state=True), input_shape=(None, 14))
    out, hf, hb = bi(torch.randn(2, 9, 14))
    assert bi.count_params() == 9216  # Keras: 2 × 3 × (14·32 + 32·32 + 2·32)
    assert out.shape == (2, 64) and hf.shape == hb.shape == (2, 32)
    torch.testing.assert_close(out, torch.cat([hf, hb], -1))


def test_stacked_chains_layers_and_masks():
    stack = layers.Stacked([layers.LSTM(H, return_sequences=True), layers.GRU(H)])
    x, mask = pad([torch.randn(6, I), torch.randn(3, I)], "post")
    out = stack(x, mask=mask)
    first, second = stack.layers
    torch.testing.assert_close(out, second(first(x, mask=mask), mask=mask))
    alone = stack(x[1:, :3])
    torch.testing.assert_close(out[1], alone[0])
    with pytest.raises(ConfigError, match="return_sequences=True"):
        layers.Stacked([layers.LSTM(H), layers.LSTM(H)])
    deep = layers.Stacked(layers.SimpleRNN(H), depth=3)
    assert deep(x).shape == (2, H) and len(deep.layers) == 3


def test_dilated_rnn_levels_and_final_conv():
    net = layers.DilatedRNN(layers.GRU(H), num_layers=3, base=2, l0=1, final_conv=True,
                            return_sequences=True)
    assert net.dilations == (2, 4, 8)
    x = torch.randn(B, 20, I)
    out = net(x)
    assert out.shape == (B, 20, H)
    assert [lv.dilation for lv in net.levels] == [2, 4, 8]
    seq = x
    for lv in net.levels:
        seq = lv(seq)
    conv = torch.nn.functional.conv1d(
        torch.nn.functional.pad(seq.transpose(1, 2), (7, 0)), net.conv_weight, net.conv_bias)
    torch.testing.assert_close(out, conv.transpose(1, 2))


def test_stateful_carries_state_between_calls():
    layer = layers.GRU(H, stateful=True)
    x = torch.randn(B, 8, I)
    layer(x[:, :4])
    second = layer(x[:, 4:])
    whole = layers.GRU(H)
    whole(x)
    whole.set_weights(layer.get_weights())
    torch.testing.assert_close(second, whole(x))
    layer.reset_states()
    assert layer.states is None


def test_initial_state_and_learnable_h0():
    layer = layers.LSTM(H, return_state=True)
    x = torch.randn(B, T, I)
    h0, c0 = torch.randn(B, H), torch.randn(B, H)
    out, h, c = layer(x, initial_state=[h0, c0])
    ys, final, _ = scan(layer.cell, x, (h0, c0))
    torch.testing.assert_close(h, final[0])
    learn = layers.SimpleRNN(H, learn_initial_state=True)
    learn(x).sum().backward()
    assert learn.initial_state[0].grad is not None


def test_dropout_is_per_sequence_and_off_in_eval():
    layer = layers.LSTM(H, dropout=0.5, recurrent_dropout=0.5)
    x = torch.randn(B, T, I)
    layer(x)
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    assert not torch.allclose(layer(x), layer(x))


def test_regularizers_add_penalty():
    from rnnkit import regularizers

    layer = layers.GRU(H, kernel_regularizer=regularizers.l2(0.001),
                       recurrent_regularizer=regularizers.l1(0.01))
    layer(torch.randn(2, 3, I))
    expected = 0.001 * layer.cell.weight_ih.square().sum() + 0.01 * layer.cell.weight_hh.abs().sum()
    torch.testing.assert_close(layer.regularization_loss(), expected)
    bi = layers.Bidirectional(layers.GRU(H, kernel_regularizer=regularizers.l2(0.001)))
    bi(torch.randn(2, 3, I))
    expected = sum(0.001 * lay.cell.weight_ih.square().sum()
                   for lay in (bi.forward_layer, bi.backward_layer))
    torch.testing.assert_close(bi.regularization_loss(), expected)


def test_errors_name_layer_expected_and_received():
    layer = layers.LSTM(H, name="encoder")
    with pytest.raises(ShapeError, match=r"encoder.*rank 3.*\(4, 3\)"):
        layer(torch.randn(4, 3))
    layer(torch.randn(2, 5, I))
    with pytest.raises(ShapeError, match=rf"encoder.*{I} features.*\(2, 5, 9\)"):
        layer(torch.randn(2, 5, 9))
    with pytest.raises(ShapeError, match="mask must have shape"):
        layer(torch.randn(2, 5, I), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ConfigError, match="unknown activation 'tanhh'"):
        layers.SimpleRNN(H, activation="tanhh")
    with pytest.raises(ConfigError, match="dropout must be in"):
        layers.GRU(H, dropout=1.5)
    with pytest.raises(ConfigError, match="feedback=True needs output_units"):
        layers.SimpleRNN(H, feedback=True)
    with pytest.raises(BackendError, match="unknown backend 'cuda9'"):
        layers.GRU(H, backend="cuda9")(torch.randn(2, 5, I))
    with pytest.raises(ShapeError, match="initial_state expected"):
        layers.GRU(H)(torch.randn(2, 5, I), initial_state=[torch.zeros(3, H)])


def test_layers_train_in_a_hand_written_torch_loop():
    """No Keras API needed: rnnkit layers are torch modules; a GRU learns a sequence's mean."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = layers.GRU(16)
            self.out = torch.nn.Linear(16, 1)

        def forward(self, x):
            return self.out(self.rnn(x))

    torch.manual_seed(0)
    net = Net()
    x = torch.rand(256, 10, 1)
    y = x.mean(1)
    net(x)  # build the lazy layer before handing parameters to the optimizer
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(200):
        loss = torch.nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * y.var().item()  # predicting the average would give var(y)
