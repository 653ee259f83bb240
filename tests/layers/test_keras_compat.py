"""Keras compatibility beyond Keras's own tests (tests/keras_suite): training and inference calls,
numpy and integer inputs, dtype, activity regularizers, constraints, seeds, cell layers on the
fast kernels, Masking, initializers and their configs, Bidirectional's weights, use_cudnn."""

import json
import os
import warnings

import numpy as np
import pytest
import torch

from rnnkit import cells, constraints, initializers, layers
from rnnkit.errors import BackendError, ConfigError, ShapeError
from rnnkit.layers import config as layer_config
from rnnkit.models import Sequential

B, T, I, H = 3, 6, 4, 5


def _x(*shape):
    return torch.randn(*(shape or (B, T, I)))


# -- training and inference calls -------------------------------------------------------------
def test_a_bare_call_is_inference_and_training_true_draws_dropout():
    layer = layers.LSTM(H, dropout=0.5, recurrent_dropout=0.5)
    x = _x()
    assert not layer.training  # rnnkit layers start in eval mode (torch modules: train mode)
    first = layer(x)
    torch.testing.assert_close(layer(x), first)
    assert not torch.allclose(layer(x, training=True), first)
    assert not layer.training  # the argument lasts one call


def test_train_mode_makes_training_calls_until_eval_and_the_argument_wins():
    layer = layers.GRU(H, dropout=0.5)
    x = _x()
    inference = layer(x)
    layer.train()
    assert not torch.allclose(layer(x), inference)
    torch.testing.assert_close(layer(x, training=False), inference)
    assert layer.training
    layer.eval()
    torch.testing.assert_close(layer(x), inference)


def test_training_argument_reaches_nested_layers_and_models():
    model = Sequential([layers.Bidirectional(layers.LSTM(H, dropout=0.5)), layers.Dense(1)])
    x = _x()
    inference = model(x)
    torch.testing.assert_close(model(x), inference)
    assert not torch.allclose(model(x, training=True), inference)
    assert not any(m.training for m in model.modules() if isinstance(m, layers.Layer))


def test_a_keras_style_cell_gets_the_training_flag():
    seen = []

    class Cell(layers.Layer):
        state_size = 2

        def call(self, inputs, states, training=False):
            seen.append(training)
            return states[0] + inputs[:, :2], [states[0] + inputs[:, :2]]

    rnn = layers.RNN(Cell())
    rnn(_x())
    rnn(_x(), training=True)
    assert seen == [False] * T + [True] * T


# -- inputs ---------------------------------------------------------------------------------------
def test_numpy_and_integer_inputs_give_what_float_tensors_give():
    layer = layers.SimpleRNN(H, return_sequences=True)
    ints = np.random.randint(0, 5, size=(B, T, I))
    out = layer(ints)
    assert out.dtype == torch.float32
    torch.testing.assert_close(layer(torch.as_tensor(ints)), out)
    torch.testing.assert_close(layer(torch.as_tensor(ints, dtype=torch.float32)), out)
    torch.testing.assert_close(layer(ints.astype(np.float64)), out)  # numpy floats: float32


def test_inputs_that_are_not_numbers_get_a_clear_error():
    with pytest.raises(ConfigError, match=r"lstm.*expected an array of numbers.*<U1"):
        layers.LSTM(H, name="lstm")(np.array([[["a"]]]))


def test_dense_still_refuses_integer_inputs_with_a_clear_error():
    with pytest.raises(ShapeError, match="expected a float input, got dtype torch.int64"):
        layers.Dense(2)(np.ones((2, 3), dtype=np.int64))


def test_dtype_argument_sets_the_parameters_and_autocast_the_inputs():
    layer = layers.LSTM(H, dtype="float64")
    out = layer(_x())
    assert out.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in layer.parameters())
    plain = layers.LSTM(H)
    plain(_x())
    assert plain(_x().double()).dtype == torch.float32  # autocast: inputs take the layer's dtype
    with pytest.raises(ConfigError, match=r"mixed_float16.*precision='bf16'"):
        layers.GRU(H, dtype="mixed_float16")


# -- losses: weight and activity regularizers -------------------------------------------------------
def test_activity_regularizer_penalises_every_output_over_the_batch():
    layer = layers.LSTM(H, return_state=True, activity_regularizer="l2")
    out, h, c = layer(_x())
    expected = sum(0.01 * t.square().sum() / B for t in (out, h, c))
    assert len(layer.losses) == 3
    torch.testing.assert_close(layer.regularization_loss(), expected)


def test_gru_bias_regularizer_is_one_penalty_on_both_biases():
    layer = layers.GRU(H, bias_regularizer="l1")
    layer(_x())
    (penalty,) = layer.losses
    torch.testing.assert_close(penalty, 0.01 * (layer.cell.bias.abs().sum()
                                                + layer.cell.bias_hh.abs().sum()))


# -- constraints and seeds -------------------------------------------------------------------------
def test_constraints_hold_after_every_optimizer_step_in_any_loop():
    layer = layers.LSTM(H, kernel_constraint="non_neg",
                        recurrent_constraint=constraints.MaxNorm(0.5), bias_constraint="unit_norm")
    x = _x()
    layer(x)
    assert (layer.cell.weight_ih < 0).any()  # not applied before the first step, as in Keras
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    for _ in range(2):
        opt.zero_grad()
        layer(x, training=True).square().sum().backward()
        opt.step()
    kernel, recurrent, bias = layer.get_weights()  # Keras's layout: axis 0 is the input axis
    assert (kernel >= 0).all()
    assert (np.linalg.norm(recurrent, axis=0) <= 0.5 + 1e-6).all()
    np.testing.assert_allclose(np.linalg.norm(bias), 1.0, rtol=1e-5)


def test_seed_makes_dropout_masks_repeatable():
    x = _x()

    def run(seed):
        layer = layers.GRU(H, dropout=0.5, recurrent_dropout=0.5, seed=seed,
                           kernel_initializer=initializers.GlorotUniform(seed=1),
                           recurrent_initializer=initializers.Orthogonal(seed=2))
        return layer(x, training=True)

    torch.testing.assert_close(run(7), run(7))
    assert not torch.allclose(run(7), run(8))


# -- Keras's cell layers on the fast kernels ------------------------------------------------------------
@pytest.mark.parametrize("cell_cls, layer_cls", [
    (layers.SimpleRNNCell, layers.SimpleRNN), (layers.LSTMCell, layers.LSTM),
    (layers.GRUCell, layers.GRU)])
def test_rnn_of_a_cell_layer_is_the_layer(cell_cls, layer_cls):
    x, mask = _x(), torch.ones(B, T, dtype=torch.bool)
    mask[0, 4:] = False
    rnn = layers.RNN(cell_cls(H), return_sequences=True, return_state=True)
    ref = layer_cls(H, return_sequences=True, return_state=True)
    rnn(x), ref(x)
    ref.set_weights(rnn.get_weights())
    for masked in (None, mask):
        got, want = rnn(x, mask=masked), ref(x, mask=masked)
        assert rnn.last_kernel == ref.last_kernel != "reference"
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)
    assert set(rnn.state_dict()) == set(ref.state_dict())


def test_bidirectional_of_a_cell_layer_fuses_both_directions_like_the_layer(monkeypatch):
    from rnnkit.engine import native, registry

    # auto puts native first for every standard cell, as on GPU (on CPU the measured rule runs
    # GRU training on the compiled loop, and then no layer takes the one-call path)
    monkeypatch.setattr(registry, "NATIVE_FROM_UNITS", dict.fromkeys(registry.NATIVE_FROM_UNITS, 1))
    calls = []
    run_layers = native.run_layers
    monkeypatch.setattr(native, "run_layers", lambda *a, **k: calls.append(1) or run_layers(*a, **k))
    x = _x()
    bi = layers.Bidirectional(layers.RNN(layers.GRUCell(H), return_sequences=True))
    ref = layers.Bidirectional(layers.GRU(H, return_sequences=True))
    bi(x), ref(x)
    ref.set_weights(bi.get_weights())
    calls.clear()
    torch.testing.assert_close(bi(x), ref(x))
    assert len(calls) == 2  # one fused call each


def test_stacked_cell_layers_run_one_scan_per_cell_as_stacked_layers_do():
    x = _x()
    rnn = layers.RNN([layers.GRUCell(H), layers.LSTMCell(H + 1)], return_sequences=True)
    stack = layers.Stacked([layers.GRU(H, return_sequences=True),
                            layers.LSTM(H + 1, return_sequences=True)])
    rnn(x), stack(x)
    stack.set_weights(rnn.get_weights())
    torch.testing.assert_close(rnn(x), stack(x))
    assert rnn.last_kernel != "reference"
    explicit = layers.RNN(layers.StackedRNNCells([layers.GRUCell(H), layers.LSTMCell(H + 1)]),
                          return_sequences=True)
    explicit(x)
    explicit.set_weights(rnn.get_weights())
    torch.testing.assert_close(explicit(x), rnn(x))


def test_a_cell_layer_steps_once_when_called():
    cell = layers.LSTMCell(H)
    rnn = layers.RNN(cell, return_state=True)
    x = _x()
    out, h, c = rnn(x[:, :1])
    zeros = [s.numpy() for s in cell.get_initial_state(B)]  # numpy states are taken too
    y, (h1, c1) = cell(x[:, 0], zeros)
    torch.testing.assert_close(y, out)
    torch.testing.assert_close(h1, h)
    torch.testing.assert_close(c1, c)


def test_cell_layer_regularizers_and_dropout_reach_the_rnn():
    rnn = layers.RNN(layers.SimpleRNNCell(H, kernel_regularizer="l2", dropout=0.5))
    x = _x()
    first = rnn(x)
    assert len(rnn.losses) == 1
    torch.testing.assert_close(rnn(x), first)
    assert not torch.allclose(rnn(x, training=True), first)
    with pytest.raises(ConfigError, match="the cell's arguments"):
        layers.RNN(layers.GRUCell(H), dropout=0.2)


def test_keras_names_and_engine_names_are_two_kinds_of_cell():
    assert layers.LSTMCell is not cells.LSTMCell
    engine = cells.LSTMCell(I, H)  # sizes up front; the engine's step
    rnn = layers.RNN(engine, return_sequences=True)
    assert rnn(_x()).shape == (B, T, H)
    keras = layers.LSTMCell(H)  # Keras's arguments, built from the first input
    assert keras.state_size == [H, H] and keras.cell is None


def test_get_weights_of_an_engine_cell_subclass_keeps_its_own_parameters():
    class ScaledCell(cells.SimpleCell):
        def __init__(self):
            super().__init__(I, H)
            self.scale = torch.nn.Parameter(torch.full((H,), 2.0))

        def step(self, xw_t, state, h_lags):
            h = torch.tanh(xw_t + self.recurrent(h_lags)) * self.scale
            return h, (h,)

    rnn = layers.RNN(ScaledCell())
    rnn(_x())
    weights = rnn.get_weights()
    assert len(weights) == 4
    np.testing.assert_array_equal(weights[3], np.full(H, 2.0))
    rnn.set_weights(weights[:3] + [np.full(H, 3.0, dtype=np.float32)])
    assert torch.equal(rnn.cell.scale, torch.full((H,), 3.0))


def test_an_engine_cell_whose_output_is_not_its_state_returns_its_last_output():
    class TwoStates(cells.Cell):  # Keras's TwoStatesRNNCell as an engine cell: y = s1 + s2
        state_count = 2

        def step(self, xw_t, state, h_lags):
            s1 = xw_t + self.recurrent(h_lags)
            s2 = xw_t + self.recurrent(h_lags)
            return s1 + s2, (s1, s2)

    cell = TwoStates(3, 2, bias=False)
    torch.nn.init.ones_(cell.weight_ih)
    torch.nn.init.ones_(cell.weight_hh)
    out, s1, s2 = layers.RNN(cell, return_state=True)(torch.ones(1, 2, 3))
    torch.testing.assert_close(out, torch.full((1, 2), 18.0))
    torch.testing.assert_close(s1, torch.full((1, 2), 9.0))


def init_halves(w):  # a module-level initializer: written in the config by name
    return torch.nn.init.constant_(w, 0.5)


def test_a_module_level_function_initializer_is_written_by_name():
    config = json.loads(json.dumps(layers.GRU(H, kernel_initializer=init_halves).get_config()))
    assert config["kernel_initializer"]["config"] == "init_halves"
    with pytest.raises(ConfigError, match=r"custom_objects=\{'init_halves'"):
        layers.GRU.from_config(config)
    again = layers.GRU.from_config(config, custom_objects={"init_halves": init_halves})
    again(_x())
    assert torch.equal(again.cell.weight_ih, torch.full((3 * H, I), 0.5))


# -- state ------------------------------------------------------------------------------------------
def test_get_initial_state_and_reset_state():
    lstm = layers.LSTM(H, stateful=True)
    lstm(_x())
    h0, c0 = lstm.get_initial_state(B)
    assert torch.equal(h0, torch.zeros(B, H)) and torch.equal(c0, torch.zeros(B, H))
    x = _x()
    lstm.reset_state()
    first = lstm(x)
    assert not torch.allclose(lstm(x), first)  # carried the state
    lstm.reset_state()
    torch.testing.assert_close(lstm(x), first)
    learned = layers.GRU(H, learn_initial_state=True)
    learned(_x())
    with torch.no_grad():
        learned.initial_state[0].fill_(0.5)
    (state,) = learned.get_initial_state(2)
    assert torch.equal(state, torch.full((2, H), 0.5))


def test_compute_output_shape_before_build():
    assert layers.LSTM(H, return_state=True).compute_output_shape((None, T, I)) == [
        (None, H), (None, H), (None, H)]
    assert layers.GRU(H, return_sequences=True, output_units=2).compute_output_shape(
        (B, T, I)) == (B, T, 2)
    layer = layers.SimpleRNN(H)
    before = torch.random.get_rng_state()
    layer.compute_output_shape((B, T, I))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert not layer.built


# -- Masking -------------------------------------------------------------------------------------------
def test_masking_layer_masks_padded_steps_for_the_next_layer():
    x = _x()
    x[1, 3:] = 0.0
    model = Sequential([layers.Masking(0.0), layers.LSTM(H)])
    out = model(x)
    lstm = model.layers[1]
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 3:] = False
    torch.testing.assert_close(out, lstm(x, mask=mask))
    assert not torch.allclose(out[1], lstm(x)[1])
    torch.testing.assert_close(layers.Masking(0.0).compute_mask(x), mask)


# -- initializers ---------------------------------------------------------------------------------------
def test_constant_and_identity():
    w = torch.empty(3, 4)
    assert torch.equal(initializers.Constant(0.3)(w), torch.full((3, 4), 0.3))
    assert torch.equal(initializers.Identity(2.0)(torch.empty(3, 3)), 2 * torch.eye(3))
    assert torch.equal(initializers.get("identity")(torch.empty(2, 3)), torch.eye(2, 3))


def test_seeded_initializers_repeat_and_truncated_normal_stays_within_two_deviations():
    a = initializers.TruncatedNormal(stddev=0.1, seed=5)(torch.empty(200, 100))
    b = initializers.TruncatedNormal(stddev=0.1, seed=5)(torch.empty(200, 100))
    assert torch.equal(a, b)
    assert a.abs().max() <= 0.2


@pytest.mark.parametrize("init, limit", [
    (initializers.lecun_uniform, np.sqrt(3 / 400)),
    (initializers.VarianceScaling(2.0, "fan_out", "uniform"), np.sqrt(6 / 300)),
    (initializers.GlorotUniform(), np.sqrt(6 / 700)),
])
def test_uniform_variance_scaling_limits(init, limit):
    w = init(torch.empty(300, 400))  # torch layout (out, in): fan_in 400, fan_out 300
    assert w.abs().max() <= limit
    assert w.abs().max() > 0.99 * limit


@pytest.mark.parametrize("init, std", [
    (initializers.lecun_normal, np.sqrt(1 / 400)),
    (initializers.VarianceScaling(1.0, "fan_avg", "untruncated_normal"), np.sqrt(1 / 350)),
    (initializers.he_normal, np.sqrt(2 / 400)),
])
def test_normal_variance_scaling_has_the_keras_variance(init, std):
    w = init(torch.empty(300, 400))  # 120k draws: the sample std is within 1% of the true one
    assert abs(w.std().item() / std - 1) < 0.01


def test_initializer_objects_are_written_in_the_config_and_read_back():
    layer = layers.GRU(H, kernel_initializer=initializers.VarianceScaling(0.5, seed=3),
                       recurrent_initializer=initializers.Identity(),
                       bias_initializer=initializers.Constant(0.1),
                       kernel_constraint=constraints.MaxNorm(3.0))
    config = json.loads(json.dumps(layer.get_config()))
    assert config["bias_initializer"] == {"class_name": "Constant", "config": {"value": 0.1}}
    again = layers.GRU.from_config(config)
    assert again.kernel_initializer == initializers.VarianceScaling(0.5, seed=3)
    assert again.kernel_constraint == constraints.MaxNorm(3.0)
    again(_x())
    assert torch.equal(again.cell.bias, torch.full((3 * H,), 0.1))
    with pytest.raises(ConfigError, match="kernel_initializer.*cannot be saved as JSON"):
        layers.LSTM(H, kernel_initializer=lambda w: w.fill_(0)).get_config()


# -- Bidirectional and use_cudnn ----------------------------------------------------------------------------
def test_bidirectional_weights_argument_loads_at_build():
    ref = layers.Bidirectional(layers.LSTM(H))
    ref(_x())
    weights = ref.get_weights()
    bi = layers.Bidirectional(layers.LSTM(H), weights=weights)
    bi(_x())
    for got, want in zip(bi.get_weights(), weights):
        np.testing.assert_array_equal(got, want)


def test_bidirectional_of_a_built_layer_starts_from_its_config_with_new_weights():
    lstm = layers.LSTM(H, use_cudnn=False)
    lstm(_x())
    bi = layers.Bidirectional(lstm)
    assert not bi.forward_layer.built and bi.forward_layer.use_cudnn is False
    with pytest.raises(ConfigError, match="must differ in go_backwards"):
        layers.Bidirectional(layers.GRU(H), backward_layer=layers.GRU(H))


def test_use_cudnn_chooses_or_refuses_the_native_kernel():
    x, mask = _x(), torch.ones(B, T, dtype=torch.bool)
    off = layers.LSTM(H, use_cudnn=False)
    off(x)
    assert off.last_kernel != "native"
    on = layers.LSTM(H, use_cudnn=True)
    on(x)
    assert on.last_kernel == "native"
    mask[0, -1] = False
    if torch.device("cpu") == x.device:
        with pytest.raises(BackendError, match="backend 'native' cannot run"):
            on(x, mask=mask)
    with pytest.raises(ConfigError, match="use_cudnn must be"):
        layers.GRU(H, use_cudnn="yes")
    with pytest.raises(ConfigError, match="contradicts backend='compiled'"):
        layers.GRU(H, use_cudnn=True, backend="compiled")
    with pytest.raises(ConfigError, match="implementation must be one of"):
        layers.LSTM(H, implementation=3)


def test_use_cudnn_holds_inside_bidirectional_and_stacked(monkeypatch, lstm_inference_on_native):
    """The wrappers hand the engine what each layer asks for itself: use_cudnn=True runs both
    directions in one native call even in training on CPU (where auto would take the compiled
    loop), use_cudnn=False keeps them off native even where auto would take it (inference)."""
    from rnnkit.engine import native

    calls = []
    run_layers = native.run_layers
    monkeypatch.setattr(native, "run_layers",
                        lambda cells, *a, **k: calls.append(len(cells)) or run_layers(cells, *a, **k))
    x = _x()
    on = layers.Bidirectional(layers.LSTM(H, use_cudnn=True, return_sequences=True))
    on(x)
    assert calls == [2] and on.forward_layer.last_kernel == "native"
    off = layers.Bidirectional(layers.LSTM(H, use_cudnn=False, return_sequences=True))
    auto = layers.Stacked([layers.LSTM(H, return_sequences=True), layers.LSTM(H)])
    with torch.no_grad():
        off(x), auto(x)
        calls.clear()
        off(x)
        assert calls == [] and off.forward_layer.last_kernel == "compiled"
        auto(x)  # inference: auto runs LSTM on native (pinned), so one call for the stack
        assert calls == [2] and auto.layers[1].last_kernel == "native"
    auto(x)  # training on CPU: auto runs each LSTM on the compiled loop
    assert calls == [2] and auto.layers[1].last_kernel == "compiled"


def test_unknown_arguments_are_named():
    with pytest.raises(TypeError, match="use_cudnn"):
        layers.SimpleRNN(H, use_cudnn=True)  # not a SimpleRNN argument in Keras either
    with pytest.raises(TypeError, match="flavour"):
        layers.LSTM(H, flavour="vanilla")


def test_serialized_rnn_of_cell_layers_round_trips():
    rnn = layers.RNN([layers.LSTMCell(H, dropout=0.1), layers.GRUCell(2)], return_sequences=True)
    spec = json.loads(json.dumps(layer_config.serialize_layer(rnn)))
    again = layer_config.deserialize_layer(spec)
    assert again(_x()).shape == (B, T, 2)


# -- against Keras itself, where it is installed (the `keras` dev extra) ----------------------------
@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_masked_outputs_match_keras(name, go_backwards, zero_output_for_mask):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    x = rng.random((3, 5, 2)).astype("float32")
    mask = rng.random((3, 5)) < 0.6  # holes anywhere, leading and trailing ones included
    kwargs = dict(go_backwards=go_backwards, zero_output_for_mask=zero_output_for_mask)
    with warnings.catch_warnings():  # numpy 2's __array__ notice from inside Keras
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = getattr(keras.layers, name)(4, return_sequences=True, **kwargs)
        want = keras.ops.convert_to_numpy(theirs(x, mask=mask))
        weights = theirs.get_weights()
    ours = getattr(layers, name)(4, return_sequences=True, **kwargs)
    ours(x)
    ours.set_weights(weights)
    np.testing.assert_allclose(ours(x, mask=mask).detach().numpy(), want, atol=1e-6, rtol=1e-6)


class MinimalCell(layers.Layer):
    """Keras's MinimalRNNCell (the RNN docstring's example), written against rnnkit."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="uniform",
                                      name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                initializer="uniform", name="recurrent_kernel")

    def call(self, inputs, states):
        h = inputs @ self.kernel
        output = h + states[0] @ self.recurrent_kernel
        return output, [output]


def test_models_of_cell_layers_and_user_cells_save_and_load(tmp_path):
    from rnnkit.models import load_model

    model = Sequential([layers.RNN([layers.LSTMCell(H), MinimalCell(3)], return_sequences=True),
                        layers.RNN(layers.GRUCell(2)), layers.Dense(1)])
    x = _x()
    want = model(x)
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    torch.testing.assert_close(again(x), want)
    assert sorted(again.state_dict()) == sorted(model.state_dict())
