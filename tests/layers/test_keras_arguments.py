"""Every constructor argument of Keras 3's SimpleRNN, LSTM, GRU, RNN and Bidirectional is accepted
by rnnkit's layer of the same name, and a layer made with it runs (docs/keras.md has the table of
what each one does here). The names are Keras 3.15.1's (``inspect.signature`` of each class, plus
the keyword arguments Keras's base Layer and RNN take through ``**kwargs``); when keras is
installed, the last test checks the list against it."""

import inspect
import os

import pytest
import torch

from rnnkit import constraints, initializers, layers

# its own generator: the global RNG's state at import depends on which test files were collected
X = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))

_WEIGHTS = {
    "use_bias": False,
    "kernel_initializer": initializers.Constant(0.01),
    "recurrent_initializer": "identity",
    "bias_initializer": "ones",
    "kernel_regularizer": "l2",
    "recurrent_regularizer": "l1",
    "bias_regularizer": "l1_l2",
    "activity_regularizer": "l2",
    "kernel_constraint": "non_neg",
    "recurrent_constraint": constraints.MaxNorm(2.0),
    "bias_constraint": "unit_norm",
    "dropout": 0.25,
    "recurrent_dropout": 0.25,
    "seed": 3,
}
_RNN = {
    "return_sequences": True,
    "return_state": True,
    "go_backwards": True,
    "stateful": True,
    "unroll": True,
}
# Keras's base Layer (name, dtype, trainable, autocast; input_shape/input_dim through **kwargs).
_BASE = {
    "name": "custom_name",
    "dtype": "float64",
    "trainable": False,
    "autocast": False,
    "input_shape": (None, 3),
    "input_dim": 3,
}

KERAS_ARGUMENTS = {
    "SimpleRNN": {"units": 4, "activation": "relu", **_WEIGHTS, **_RNN},
    "LSTM": {"units": 4, "activation": "tanh", "recurrent_activation": "hard_sigmoid",
             "unit_forget_bias": False, **_WEIGHTS, **_RNN, "use_cudnn": False},
    "GRU": {"units": 4, "activation": "tanh", "recurrent_activation": "sigmoid",
            **_WEIGHTS, **_RNN, "reset_after": False, "use_cudnn": False},
    "RNN": {"cell": "see _make", **_RNN, "zero_output_for_mask": True},
    "Bidirectional": {"layer": "see _make", "merge_mode": "sum", "weights": "see _make",
                      "backward_layer": "see _make"},
}
# Through **kwargs: RNN's zero_output_for_mask, and LSTM's and GRU's legacy ``implementation``.
EXTRA = {"SimpleRNN": {"zero_output_for_mask": True},
         "LSTM": {"implementation": 1, "zero_output_for_mask": True},
         "GRU": {"implementation": 1, "zero_output_for_mask": True}}
CASES = [(layer, arg) for layer, args in KERAS_ARGUMENTS.items() for arg in args] + [
    (layer, arg) for layer in KERAS_ARGUMENTS for arg in _BASE] + [
    (layer, arg) for layer, args in EXTRA.items() for arg in args]


def _make(layer_name: str, arg: str):
    if layer_name == "RNN":
        value = {**KERAS_ARGUMENTS["RNN"], **_BASE}.get(arg)
        return layers.RNN(layers.GRUCell(4), **({} if arg == "cell" else {arg: value}))
    if layer_name == "Bidirectional":
        if arg == "weights":
            ref = layers.Bidirectional(layers.LSTM(4))
            ref(X)
            return layers.Bidirectional(layers.LSTM(4), weights=ref.get_weights())
        if arg == "backward_layer":
            return layers.Bidirectional(layers.LSTM(4),
                                        backward_layer=layers.LSTM(4, go_backwards=True))
        value = {"layer": None, "merge_mode": "sum", **_BASE}[arg]
        return layers.Bidirectional(layers.LSTM(4), **({} if arg == "layer" else {arg: value}))
    cls = getattr(layers, layer_name)
    table = {**KERAS_ARGUMENTS[layer_name], **_BASE, **EXTRA.get(layer_name, {})}
    return cls(4, **({} if arg == "units" else {arg: table[arg]}))


@pytest.mark.parametrize("layer_name, arg", CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_keras_argument_is_accepted_and_the_layer_runs(layer_name, arg):
    layer = _make(layer_name, arg)
    out = layer(X, training=True)
    first = out[0] if isinstance(out, list) else out
    assert torch.isfinite(first).all()


def test_arguments_that_change_numbers_do():
    plain = layers.LSTM(4, kernel_initializer=initializers.Constant(0.1))
    relu = layers.LSTM(4, kernel_initializer=initializers.Constant(0.1), activation="relu")
    assert not torch.allclose(plain(X), relu(X))
    frozen = layers.GRU(4, trainable=False)
    frozen(X)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert layers.SimpleRNN(4, name="custom_name").name == "custom_name"
    assert layers.SimpleRNN(4, input_dim=3).declared_input_shape == (None, 3)


def test_the_argument_list_is_keras_s():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    for name, recorded in KERAS_ARGUMENTS.items():
        params = inspect.signature(getattr(keras.layers, name).__init__).parameters
        assert set(recorded) == {p for p in params if p not in ("self", "kwargs")}, name
    base = inspect.signature(keras.layers.Layer.__init__).parameters
    assert {p for p in base if p not in ("self", "kwargs")} <= set(_BASE) | {"activity_regularizer"}
    assert sum(len(v) for v in KERAS_ARGUMENTS.values()) == 80
