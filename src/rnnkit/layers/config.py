"""Layer configs as JSON: Keras's ``{"class_name": ..., "config": {...}}``.

As in Keras 3, a layer's config is the arguments it was constructed with (``Layer.__new__`` records
them), so ``from_config(get_config())`` rebuilds the same layer. Values are turned into JSON here:
names stay names, a callable that rnnkit knows by name (``torch.tanh``, ``initializers.orthogonal``)
becomes its name, an initializer or constraint object (``initializers.Constant(0.01)``) Keras's
``{"class_name": ..., "config": {...}}``, a user's module-level function
``{"class_name": "function", "config": its name}`` (read back from ``custom_objects``), a
regularizer ``{"l1": .., "l2": ..}``, a nested layer its own config. Anything else (a lambda, a
cell object) cannot be written as JSON and raises a ConfigError that names the layer and the
argument. Reading resolves class names among the Layer
classes the program has defined (rnnkit's and the user's own) and ``custom_objects``: nothing is
imported or unpickled.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from .. import activations, constraints, initializers
from ..errors import ConfigError
from .regularizers import L1L2

# Every Layer subclass, by bare name for rnnkit's own and by "module.QualName" for others: a saved
# config can only name classes the running program defined itself.
LAYER_CLASSES: dict[str, type] = {}


def register(cls: type) -> None:
    key = cls.__name__ if cls.__module__.startswith("rnnkit.") else _qualified(cls)
    LAYER_CLASSES[key] = cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def bound_arguments(cls: type, args: tuple, kwargs: dict) -> dict | None:
    """The constructor call as keyword arguments (``**kwargs`` flattened); None when it does
    not bind (``__init__`` then raises the proper error) or takes ``*args``."""
    signature = inspect.signature(cls.__init__)
    try:
        bound = signature.bind(None, *args, **kwargs)
    except TypeError:
        return None
    out: dict[str, Any] = {}
    for name, value in list(bound.arguments.items())[1:]:
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            return None
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[name] = value
    return out


# -- writing -------------------------------------------------------------------------------------
def serialize_layer(layer) -> dict:
    """``{"class_name": ..., "config": layer.get_config()}`` (plus "module" for a user's class)."""
    cls = type(layer)
    out = {"class_name": cls.__name__, "config": layer.get_config()}
    if not cls.__module__.startswith("rnnkit."):
        out["module"] = cls.__module__
    return out


def serialize_value(value, layer, arg: str):
    """One constructor argument as a JSON value; ConfigError naming layer and argument if not."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [serialize_value(v, layer, arg) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: serialize_value(v, layer, arg) for k, v in value.items()}
    if isinstance(value, tuple(LAYER_CLASSES.values())):  # a nested layer (every Layer registers)
        return serialize_layer(value)
    if isinstance(value, L1L2):
        return {"l1": value.l1, "l2": value.l2}
    if isinstance(value, (initializers.Initializer, constraints.Constraint)):
        out = {"class_name": type(value).__name__, "config": value.get_config()}
        if not type(value).__module__.startswith("rnnkit."):
            out["module"] = type(value).__module__
        return out
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    name = _registered_name(value)
    if name is not None:
        return name
    if inspect.isfunction(value) and "<" not in value.__qualname__:
        # a module-level function of the user's, by name (as Keras writes one); loading it back
        # needs custom_objects={name: function}: nothing is imported
        return {"class_name": "function", "config": value.__name__, "module": value.__module__}
    what = getattr(value, "__name__", type(value).__name__)
    raise ConfigError(
        f"{layer.name} ({type(layer).__name__}): argument {arg!r} = {what} cannot be saved as "
        f"JSON (rnnkit's named activations, initializers, regularizers and constraints, their "
        f"classes and module-level functions can); pass a name such as 'tanh' or a function "
        f"defined with def at module level, or save the weights only (save_weights) and rebuild "
        f"the model in code")


def _registered_name(fn) -> str | None:
    return activations.registered_name(fn) or initializers.registered_name(fn)


# -- reading -------------------------------------------------------------------------------------
def _deserialize_object(spec: dict, module, custom_objects: dict | None):
    """An initializer or constraint from its config: rnnkit's class, or the user's from
    ``custom_objects``."""
    name = spec["class_name"]
    cls = (custom_objects or {}).get(name) or module.CLASSES.get(name)
    if cls is None:
        raise ConfigError(f"unknown {module.__name__.rsplit('.', 1)[-1]} class {name!r}: pass "
                          f"custom_objects={{{name!r}: YourClass}}")
    return cls.from_config(dict(spec["config"]))


def deserialize_layer(spec, custom_objects: dict | None = None):
    """The layer a ``serialize_layer`` dict describes."""
    if not (isinstance(spec, dict) and isinstance(spec.get("class_name"), str)
            and isinstance(spec.get("config"), dict)):
        raise ConfigError(f"expected a layer config {{'class_name': ..., 'config': {{...}}}}, "
                          f"got {str(spec)[:200]}")
    cls = layer_class(spec["class_name"], spec.get("module"), custom_objects)
    return cls.from_config(spec["config"])


def layer_class(name: str, module: str | None, custom_objects: dict | None) -> type:
    custom = custom_objects or {}
    if name in custom:
        return custom[name]
    key = name if module is None else f"{module}.{name}"
    if key in LAYER_CLASSES:
        return LAYER_CLASSES[key]
    where = name if module is None else key
    raise ConfigError(f"unknown layer class {where!r}: define (import) it before loading, or pass "
                      f"custom_objects={{{name!r}: YourLayer}}")


def deserialize_value(arg: str, value, custom_objects: dict | None = None):
    """Undo ``serialize_value`` for argument ``arg`` (names stay names: the layer resolves them)."""
    if isinstance(value, dict) and value.get("class_name") == "function":
        fn = (custom_objects or {}).get(value.get("config"))
        if fn is None:
            raise ConfigError(f"argument {arg!r}: the function {value.get('config')!r} (module "
                              f"{value.get('module')!r}) is the user's; pass "
                              f"custom_objects={{{value.get('config')!r}: the_function}}")
        return fn
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        for suffix, module in (("_initializer", initializers), ("_constraint", constraints)):
            if arg.endswith(suffix):
                return _deserialize_object(value, module, custom_objects)
        return deserialize_layer(value, custom_objects)
    if isinstance(value, list) and value and all(
            isinstance(v, dict) and "class_name" in v for v in value):
        return [deserialize_layer(v, custom_objects) for v in value]
    if arg.endswith("_regularizer") and isinstance(value, dict):
        return L1L2(float(value.get("l1", 0.0)), float(value.get("l2", 0.0)))
    return value
