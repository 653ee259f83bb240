"""Keras's test helpers, translated to rnnkit, for the ported Keras test files beside this one.

Source: keras-team/keras, keras/src/testing/test_case.py at KERAS_COMMIT (TestCase.assertAllClose,
TestCase.run_layer_test, TestCase.run_class_serialization_test). What each check becomes in rnnkit,
and which checks of Keras-internal machinery are left out and why, is in README.md here.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from rnnkit.layers import config as layer_config
from rnnkit.models import Sequential

KERAS_REPO = "keras-team/keras"
KERAS_COMMIT = "3422977a5e38fb2f7709aaa9a08e47f0c43d0f60"


def to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def assert_all_close(actual, desired, atol=1e-6, rtol=1e-6):
    """Keras's TestCase.assertAllClose: its default tolerances are 1e-6, absolute and relative
    (the tpu_atol/tpu_rtol of Keras's tests apply on TPUs only, so not here)."""
    np.testing.assert_allclose(to_numpy(actual), to_numpy(desired), atol=atol, rtol=rtol)


def _json(config) -> str:
    return json.dumps(config, sort_keys=True)


def run_class_serialization_test(instance, custom_objects=None):
    """get_config -> JSON -> from_config gives the same config and the same attributes; the same
    through rnnkit's serialize/deserialize (Keras's serialize_keras_object round trip)."""
    cls = type(instance)
    config = instance.get_config()
    config_json = _json(config)
    ref_dir = set(dir(instance))
    revived = cls.from_config(json.loads(config_json), custom_objects=custom_objects)
    assert _json(revived.get_config()) == config_json
    assert set(dir(revived)) == ref_dir
    serialized = json.loads(_json(layer_config.serialize_layer(instance)))
    revived = layer_config.deserialize_layer(serialized, custom_objects)
    assert _json(revived.get_config()) == config_json
    assert set(dir(revived)) == ref_dir
    return revived


def _shape_matches(expected, actual) -> bool:
    if len(expected) != len(actual):
        return False
    return all(e is None or e == a for e, a in zip(expected, actual))


def _is_shape(value) -> bool:
    return isinstance(value, (tuple, list)) and all(v is None or isinstance(v, int) for v in value)


def _assert_shapes(expected, output) -> None:
    """Keras's verify_shape over the output's structure (a tensor, a shape, or lists of them)."""
    if isinstance(output, torch.Tensor) or _is_shape(output):
        actual = tuple(output.shape) if isinstance(output, torch.Tensor) else tuple(output)
        assert _shape_matches(tuple(expected), actual), f"expected {expected}, got {actual}"
        return
    assert len(expected) == len(output), (expected, output)
    for e, o in zip(expected, output):
        _assert_shapes(e, o)


def _num_trainable(layer) -> int:
    # Keras counts variables in its own layout; rnnkit's get_weights lists exactly those arrays.
    return len(layer.get_weights()) if layer.trainable else 0


def _input(shape) -> torch.Tensor:
    # Keras's create_eager_tensors: float32 uniform values times 3 (any values would do here).
    return torch.rand(shape, dtype=torch.float32) * 3


def run_layer_test(layer_cls, init_kwargs, input_shape, call_kwargs=None,
                   expected_output_shape=None, expected_num_trainable_weights=None,
                   expected_num_non_trainable_weights=None, expected_num_losses=None,
                   custom_objects=None, run_training_check=True):
    """Keras's run_layer_test for rnnkit: the serialization round trip, the build (weight
    counts), the shapes before building (Keras's symbolic call), an eager call (shapes and
    losses) and one training step of fit. See README.md for what is left out."""
    call_kwargs = call_kwargs or {}
    run_class_serialization_test(layer_cls(**init_kwargs), custom_objects)

    layer = layer_cls(**init_kwargs)
    layer.build(input_shape)
    assert layer.built
    if expected_num_trainable_weights is not None:
        assert _num_trainable(layer) == expected_num_trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert len(list(layer.buffers())) == expected_num_non_trainable_weights

    if expected_output_shape is not None:  # Keras: a call on KerasTensors, before any build
        _assert_shapes(expected_output_shape, layer_cls(**init_kwargs).compute_output_shape(
            input_shape))

    layer = layer_cls(**init_kwargs)
    x = _input(input_shape)
    output = layer(x, **call_kwargs)
    if expected_output_shape is not None:
        _assert_shapes(expected_output_shape, output)
    if expected_num_losses is not None:
        assert len(layer.losses) == expected_num_losses

    if run_training_check:
        _training_step(layer, x, output)


def _training_step(layer, x, y) -> None:
    """Keras's run_training_step: fit one step of SGD with loss = sum(y_pred)."""
    model = Sequential([layer])
    model.compile(optimizer="sgd", loss=lambda y_true, y_pred: y_pred.sum())
    history = model.fit(x.numpy(), to_numpy(y), batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
