"""The Layer contract shared by every rnnkit layer.

A Layer is a torch.nn.Module whose parameters may be created lazily: ``build(input_shape)`` runs
on the first call (or when the shape is given up front, as Keras's ``input_shape=``), so
``SimpleRNN(32)`` needs no input size. Masks flow as Keras's do: ``forward(x, mask=None)`` for
layers with ``supports_masking``; ``compute_mask(x, mask)`` gives the mask for the next layer.

Training and inference, as in Keras: a call is inference (no dropout, BatchNormalization's moving
statistics) unless ``training=True`` is passed to that call. Layers are torch modules too, and
torch's switch works: rnnkit layers *start in eval mode* (torch modules start in train mode),
``layer.train()`` makes later calls training calls until ``layer.eval()``; ``fit`` does that for its
steps. A ``training=`` argument wins over the module's mode for that one call and for every layer
called inside it. numpy arrays are accepted wherever tensors are: floats in the layer's dtype, as
Keras converts them; integers stay integers, except for the recurrent layers, which compute in
floats and take integer sequences as Keras's do (``float_inputs``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import re
from collections import defaultdict
from operator import attrgetter

import numpy as np
import torch
from torch import Tensor, nn

from .. import constraints as _constraints
from .. import initializers as _initializers
from ..errors import ConfigError, ShapeError
from . import config as _config
from . import regularizers as _regularizers

_COUNTERS: dict[str, itertools.count] = defaultdict(lambda: itertools.count(1))

_DTYPES = {"float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
           "float32": torch.float32, "float": torch.float32, "float64": torch.float64,
           "double": torch.float64}


def auto_name(cls_name: str) -> str:
    # Keras's rule: SimpleRNN -> simple_rnn, Conv1D -> conv1d, GlobalAveragePooling1D -> ...
    snake = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", cls_name)
    snake = re.sub(r"([a-z])([A-Z])", r"\1_\2", snake).lower()
    n = next(_COUNTERS[snake])
    return snake if n == 1 else f"{snake}_{n - 1}"


def parse_dtype(dtype, where: str) -> torch.dtype | None:
    """Keras's ``dtype=`` (a name, a torch dtype, a policy dict or object with a name) as the
    floating dtype of the layer's parameters; None keeps torch's default."""
    if dtype is None or isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    name = dtype
    if isinstance(dtype, dict):
        name = (dtype.get("config") or {}).get("name", dtype.get("name"))
    name = getattr(name, "name", name)
    if isinstance(name, str) and name.startswith("mixed_"):
        raise ConfigError(f"{where}: dtype={name!r} is a Keras mixed-precision policy; rnnkit runs "
                          "mixed precision for a whole model with torch autocast: "
                          "model.compile(..., precision='bf16') (or 'fp16' on a GPU)")
    if isinstance(name, str) and name in _DTYPES:
        return _DTYPES[name]
    raise ConfigError(f"{where}: dtype must be one of {sorted(_DTYPES)} or a floating torch dtype, "
                      f"got {dtype!r}")


def _post_build(build):
    """Wrap a subclass's ``build`` as Keras does: afterwards the layer is built, in its dtype,
    and frozen when ``trainable=False``."""

    @functools.wraps(build)
    def wrapper(self, *args, **kwargs):
        build(self, *args, **kwargs)
        self.built = True
        if self.param_dtype is not None:
            self.to(dtype=self.param_dtype)
        if not self.trainable:
            self.requires_grad_(False)

    wrapper._rnnkit_post_build = True
    return wrapper


@contextlib.contextmanager
def training_mode(module: nn.Module, training: bool):
    """Every submodule in train (or eval) mode for the block, each put back as it was: what a
    call's ``training=`` argument does."""
    before = [(m, m.training) for m in module.modules()]
    for m, _ in before:
        m.training = training
    try:
        yield
    finally:
        for m, was in before:
            m.training = was


Shape = tuple


class Layer(nn.Module):
    """Base class: lazy build, input checks, masks, regularization, Keras weights."""

    supports_masking = False
    input_rank: int | None = None  # expected rank of the input, batch included
    float_inputs = False  # True: integer and bool inputs are cast to the layer's float dtype

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _config.register(cls)
        build = cls.__dict__.get("build")
        if build is not None and not getattr(build, "_rnnkit_post_build", False):
            cls.build = _post_build(build)

    def __new__(cls, *args, **kwargs):
        # Keras 3 does the same: the config of a layer is the arguments it was made from.
        layer = super().__new__(cls)
        object.__setattr__(layer, "_init_args", _config.bound_arguments(cls, args, kwargs))
        return layer

    def __init__(self, *, name: str | None = None, input_shape=None, input_dim=None,
                 trainable: bool = True, dtype=None, activity_regularizer=None,
                 autocast: bool = True):
        super().__init__()
        self.training = False  # Keras: inference unless asked for training (module docstring)
        self.name = name or auto_name(type(self).__name__)
        if input_shape is None and input_dim is not None:
            input_shape = (None, int(input_dim))
        self.declared_input_shape = None if input_shape is None else tuple(input_shape)
        self.built = False
        if not isinstance(trainable, bool):
            raise ConfigError(f"{self.name}: trainable must be True or False, got {trainable!r}")
        self.trainable = trainable
        self.dtype_policy = dtype
        self.param_dtype = parse_dtype(dtype, self.name)
        self.autocast = bool(autocast)
        self.activity_regularizer = _regularizers.get(activity_regularizer,
                                                      f"{self.name}.activity_regularizer")
        self._activity_losses: list[Tensor] = []
        self._regularizers: list[tuple[str | Tensor, object]] = []

    # -- building ----------------------------------------------------------------------
    def build(self, input_shape: Shape) -> None:
        """Create parameters for an input of ``input_shape`` (batch dim first, may be None)."""
        self.built = True

    def ensure_built(self, input_shape: Shape) -> None:
        if not self.built:
            self.check_input_shape(input_shape)
            self.build(tuple(input_shape))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def check_input_shape(self, shape: Shape) -> None:
        if self.input_rank is not None and len(shape) != self.input_rank:
            raise ShapeError(
                f"{self.name} ({type(self).__name__}): expected input of rank {self.input_rank}, "
                f"got shape {tuple(shape)} (rank {len(shape)})"
            )

    def __call__(self, x, *args, training: bool | None = None, **kwargs):
        x = self.as_input(x)
        if isinstance(x, Tensor):
            self.check_input_shape(tuple(x.shape))
            if not self.built:
                self.ensure_built(tuple(x.shape))
                self.to(device=x.device)
                if (self.param_dtype is None and x.is_floating_point()
                        and x.dtype != torch.get_default_dtype()):
                    self.to(dtype=x.dtype)
            x = self.cast_input(x)
        kwargs = {k: self._kwarg_tensor(k, v, x) for k, v in kwargs.items()}
        if self._accepts_training():
            kwargs["training"] = self.training if training is None else bool(training)
        if training is None or bool(training) == self.training:
            out = super().__call__(x, *args, **kwargs)
        else:
            with training_mode(self, bool(training)):
                out = super().__call__(x, *args, **kwargs)
        if self.activity_regularizer is not None:
            self._activity_losses = [self.activity_regularizer(t) / max(1, t.shape[0])
                                     for t in _tensors(out) if t.dim() > 0]
        return out

    # -- inputs ------------------------------------------------------------------------------
    def compute_dtype(self) -> torch.dtype:
        """The float dtype the layer computes in: its parameters', else its ``dtype``, else
        torch's default."""
        param = next(self.parameters(), None)
        if param is not None and param.is_floating_point():
            return param.dtype
        return self.param_dtype or torch.get_default_dtype()

    def as_input(self, x):
        """numpy arrays as tensors (numbers only): floats in the layer's dtype, as Keras
        converts them; integers too for a ``float_inputs`` layer, else int64 (bool stays)."""
        if not isinstance(x, (np.ndarray, np.generic)):
            return x
        if x.dtype.kind == "f" or x.dtype.kind in "iub" and self.float_inputs:
            return torch.as_tensor(np.asarray(x), dtype=self.compute_dtype())
        if x.dtype.kind in "iub":
            return torch.as_tensor(np.asarray(x)).to(torch.int64 if x.dtype.kind != "b" else torch.bool)
        raise ConfigError(f"{self.name} ({type(self).__name__}): expected an array of numbers, "
                          f"got a numpy array of dtype {x.dtype}")

    def cast_input(self, x: Tensor) -> Tensor:
        """Integer/bool tensors to the float dtype of a ``float_inputs`` layer; with
        ``autocast`` (Keras's default) floats to the dtype of the layer's parameters (a layer
        without parameters passes any float through), unless torch's autocast is on, which
        chooses the dtypes itself."""
        if x.is_complex():
            return x
        if not x.is_floating_point():
            return x.to(self.compute_dtype()) if self.float_inputs else x
        param = next(self.parameters(), None)
        if (self.autocast and param is not None and param.is_floating_point()
                and x.dtype != param.dtype and not torch.is_autocast_enabled(x.device.type)):
            return x.to(param.dtype)
        return x

    def _kwarg_tensor(self, key: str, value, x):
        """numpy masks and initial states as tensors on the input's device."""
        device = x.device if isinstance(x, Tensor) else None
        if key == "mask" and isinstance(value, (np.ndarray, np.generic)):
            return torch.as_tensor(np.asarray(value), dtype=torch.bool, device=device)
        if key == "initial_state" and value is not None:
            dtype = x.dtype if isinstance(x, Tensor) and x.is_floating_point() \
                else self.compute_dtype()

            def convert(s):
                if isinstance(s, (np.ndarray, np.generic)):
                    return torch.as_tensor(np.asarray(s), dtype=dtype, device=device)
                return s

            return _map_nested(convert, value)
        return value

    @classmethod
    def _accepts_training(cls) -> bool:
        """Whether this class's forward (or Keras-style call) takes ``training=``."""
        cached = cls.__dict__.get("_training_arg")
        if cached is None:
            fn = cls.call if cls.forward is Layer.forward else cls.forward
            cached = "training" in inspect.signature(fn).parameters
            cls._training_arg = cached
        return cached

    # -- Keras-style subclasses ----------------------------------------------------------------
    def forward(self, *args, **kwargs):
        """torch-style layers override ``forward``; Keras-style ones implement ``call``."""
        return self.call(*args, **kwargs)

    def call(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}: a layer implements call() (as in Keras) "
                                  "or forward() (as in torch)")

    def add_weight(self, name: str | None = None, shape=(), initializer="glorot_uniform",
                   dtype=None, trainable: bool = True, regularizer=None, constraint=None):
        """Keras's ``add_weight``: a parameter of ``shape`` (Keras's layout: a kernel is
        (in, out)), filled by ``initializer``. Assign it to an attribute (``self.kernel = ...``)
        as Keras code does; that makes it one of the module's parameters."""
        where = f"{self.name}.{name or 'weight'}"
        dtype = parse_dtype(dtype, where) or self.param_dtype or torch.get_default_dtype()
        data = torch.empty(tuple(int(n) for n in shape), dtype=dtype)
        init = _initializers.get(initializer, where)
        init(data.t() if data.dim() == 2 else data)  # the initializers expect torch's (out, in)
        param = nn.Parameter(data, requires_grad=bool(trainable) and self.trainable)
        reg = _regularizers.get(regularizer, where)
        if reg is not None:
            self._regularizers.append((param, reg))
        if constraint is not None:
            _constraints.attach(param, _constraints.get(constraint, where))
        return param

    @property
    def hooked(self) -> bool:
        """Whether hooks are registered on this layer: a path that computes its output without
        calling it (``Bidirectional``, ``Stacked`` running their layers in one engine call) must
        not be taken, or the hooks would not run."""
        return bool(self._forward_hooks or self._forward_pre_hooks or self._backward_hooks
                    or self._backward_pre_hooks)

    # -- masks ---------------------------------------------------------------------------
    def compute_mask(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        return mask if self.supports_masking else None

    # -- regularization --------------------------------------------------------------------
    def add_regularizer(self, param_name: str | tuple[str, ...], regularizer) -> None:
        """Penalise parameter ``param_name`` (dotted paths like 'cell.weight_ih' allowed; a
        tuple of names is penalised as one weight)."""
        reg = _regularizers.get(regularizer, f"{self.name}.{param_name}")
        if reg is not None:
            self._regularizers.append((param_name, reg))

    @property
    def losses(self) -> list[Tensor]:
        """Keras's ``layer.losses``: one penalty per regularized weight of this layer and the
        layers inside it, then the activity penalties of their latest calls."""
        out = []
        for module in self.modules():
            if isinstance(module, Layer):
                for param, reg in module._regularizers:
                    out.append(reg(_resolve(module, param)))
        for module in self.modules():
            if isinstance(module, Layer):
                out.extend(module._activity_losses)
        return out

    def regularization_loss(self) -> Tensor | float:
        """The sum of ``losses`` (weight and activity penalties), or 0.0."""
        return sum(self.losses, 0.0)

    # -- weights as arrays (Keras order and layout where a layer overrides) -------------------
    def get_weights(self) -> list[np.ndarray]:
        return [p.detach().cpu().numpy().copy() for p in self.parameters()]

    def set_weights(self, weights) -> None:
        params = list(self.parameters())
        if len(weights) != len(params):
            raise ShapeError(
                f"{self.name}: set_weights expected {len(params)} arrays, got {len(weights)}"
            )
        with torch.no_grad():
            for i, (p, w) in enumerate(zip(params, weights)):
                w = torch.as_tensor(np.asarray(w))
                if tuple(w.shape) != tuple(p.shape):
                    raise ShapeError(
                        f"{self.name}: weight {i} expected shape {tuple(p.shape)}, "
                        f"got {tuple(w.shape)}"
                    )
                p.copy_(w.to(p.dtype))

    def count_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- config (Keras's get_config / from_config) -------------------------------------------
    def get_config(self) -> dict:
        """The constructor's arguments as JSON values, with the current ``name`` and
        ``trainable``; ``type(layer).from_config(config)`` makes an equal, unbuilt layer."""
        if self._init_args is None:
            raise ConfigError(f"{self.name} ({type(self).__name__}): its constructor arguments "
                              "were not recorded (it takes *args); override get_config()")
        args = {**self._init_args, "name": self.name, "trainable": self.trainable}
        return {k: _config.serialize_value(v, self, k) for k, v in args.items()}

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> Layer:
        """The layer ``get_config`` describes (nested layers resolved by class name)."""
        return cls(**{k: _config.deserialize_value(k, v, custom_objects)
                      for k, v in config.items()})


def top_layers(module: nn.Module):
    """The rnnkit Layers directly under ``module`` (looking through plain containers)."""
    for child in module.children():
        if isinstance(child, Layer):
            yield child
        else:
            yield from top_layers(child)


def _resolve(module: nn.Module, param) -> Tensor:
    """A regularized weight: a parameter, its dotted name, or a tuple of names penalised as one
    weight (a GRU's two biases are Keras's one (2, 3H) bias)."""
    if isinstance(param, tuple):
        return torch.cat([attrgetter(name)(module).reshape(-1) for name in param])
    return attrgetter(param)(module) if isinstance(param, str) else param


def _tensors(out):
    """The tensors of a layer's output (a tensor, or nested lists/tuples of them)."""
    if isinstance(out, Tensor):
        yield out
    elif isinstance(out, (list, tuple)):
        for item in out:
            yield from _tensors(item)


def _map_nested(fn, value):
    if isinstance(value, (list, tuple)):
        return type(value)(_map_nested(fn, v) for v in value)
    return fn(value)
