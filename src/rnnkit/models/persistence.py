"""Saving and loading models: safetensors weights plus a JSON config, written atomically.

A model directory holds
  model.safetensors  every entry of ``model.state_dict()`` (parameters and buffers);
  config.json        {"format": "rnnkit", "format_version": 1, "rnnkit_version", "torch_version",
                      "architecture": {"class_name", "config"}, "preprocessing": {...},
                      "weights_sha256": sha256 of model.safetensors}.
Loading reads JSON and safetensors only, never pickle, so a directory from a stranger cannot run
code. Writes are atomic (``rnnkit.storage``): a crash at any moment leaves the previous checkpoint
whole (between the two renames of an overwrite it sits at ``.NAME.old``, and ``load_model`` finds
it there).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save as _st_save

from ..errors import ChecksumError, ConfigError, DataFormatError, NotBuiltError
from ..storage import (  # noqa: F401  (check_finite, load_state, sha256: their old import path)
    check_finite,
    check_version,
    existing_directory,
    load_state,
    read_json,
    read_tensors,
    sha256,
    tensors_bytes,
    versions,
    write_directory,
    write_file,
)

FORMAT = "rnnkit"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
KERAS_SUFFIXES = (".keras", ".weights.h5")
# Readers of other libraries' files, by suffix. rnnkit.interop registers Keras's when it is
# imported (``import rnnkit`` does): interop sits above models, so models cannot import it.
_FOREIGN_LOADERS: dict[str, Callable] = {}
_MODEL_CLASSES: dict[str, type] = {}  # rebuilt by name; a user's own come in custom_objects


def register_loader(suffixes: tuple[str, ...], loader: Callable) -> None:
    """Make ``load_model(path)`` call ``loader(path)`` for a path ending in one of ``suffixes``."""
    for suffix in suffixes:
        _FOREIGN_LOADERS[suffix] = loader


# -- models --------------------------------------------------------------------------------------
def save_model(model, directory, overwrite: bool = True) -> Path:
    """Write ``model`` to ``directory`` (see the module docstring); returns the path."""
    if not model.built:
        raise NotBuiltError(f"{model.name}: build the model (call it on data, fit, or "
                            "build(input_shape)) before saving it")
    state = model.state_dict()
    check_finite(state, f"{model.name}.save({str(directory)!r})")
    architecture = {"class_name": type(model).__name__, "config": model.get_config()}
    weights = tensors_bytes(state)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **versions(),
              "architecture": architecture,
              "preprocessing": getattr(model, "preprocessing", {}),
              "weights_sha256": sha256(weights)}
    try:
        text = json.dumps(config, indent=2, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{model.name}.save: the config is not JSON-serialisable ({e}); "
                          "model.preprocessing must hold only JSON values (dicts, lists, "
                          "strings, finite numbers)") from None
    return write_directory(directory, {WEIGHTS_FILE: weights, CONFIG_FILE: text.encode()},
                           overwrite, CONFIG_FILE)


def load_model(path, custom_objects: dict | None = None):
    """A model saved by ``Model.save`` (a directory), or a Keras ``.keras`` / ``.weights.h5``
    file through ``rnnkit.interop.keras_file``. ``custom_objects`` maps class names to your own
    Layer or Model classes. The model comes back uncompiled (Keras's ``compile=False``)."""
    for suffix, loader in _FOREIGN_LOADERS.items():
        if str(path).endswith(suffix):
            return loader(path)
    if str(path).endswith(KERAS_SUFFIXES):
        raise ConfigError(f"{path}: reading Keras files needs rnnkit.interop.keras_file; "
                          "import rnnkit.interop first")
    directory = existing_directory(path)
    if not directory.exists():
        raise DataFormatError(f"{path}: no such model directory")
    if not directory.is_dir():
        raise DataFormatError(f"{path}: not an rnnkit model directory (a file; rnnkit saves "
                              f"models as directories with {CONFIG_FILE} and {WEIGHTS_FILE})")
    config = read_json(directory / CONFIG_FILE)
    check_version(config, directory / CONFIG_FILE, FORMAT, FORMAT_VERSION)
    state = read_tensors(directory / WEIGHTS_FILE, config.get("weights_sha256"))
    model = _model_from_architecture(config.get("architecture"), directory, custom_objects)
    load_state(model, state, directory / WEIGHTS_FILE)
    model.preprocessing = config.get("preprocessing") or {}
    return model


def register_model_class(cls: type) -> type:
    """Let ``load_model`` rebuild ``cls`` by its name without ``custom_objects`` (Sequential)."""
    _MODEL_CLASSES[cls.__name__] = cls
    return cls


def _is_model_class(cls) -> bool:
    return isinstance(cls, type) and issubclass(cls, torch.nn.Module) \
        and callable(getattr(cls, "compile", None)) and callable(getattr(cls, "from_config", None))


def _model_from_architecture(spec, directory: Path, custom_objects: dict | None):
    if not (isinstance(spec, dict) and isinstance(spec.get("config"), dict)):
        raise DataFormatError(f"{directory / CONFIG_FILE}: 'architecture' must be "
                              "{'class_name': ..., 'config': {...}}")
    name = spec.get("class_name")
    classes = {**_MODEL_CLASSES, **(custom_objects or {})}
    if name not in classes or not _is_model_class(classes[name]):
        raise ConfigError(f"{directory / CONFIG_FILE}: unknown model class {name!r}; pass "
                          f"custom_objects={{{name!r}: YourModel}}")
    try:
        return classes[name].from_config(spec["config"], custom_objects)
    except ConfigError as e:
        raise ConfigError(f"{directory / CONFIG_FILE}: cannot rebuild the model: {e}") from None


# -- weights only --------------------------------------------------------------------------------
def save_weights(model, filepath, overwrite: bool = True) -> Path:
    """``model.state_dict()`` to one safetensors file (temp file, fsync, rename); the sha256 of
    the tensors rides in the file's metadata."""
    path = Path(filepath)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: already exists; pass overwrite=True to replace it")
    state = model.state_dict()
    check_finite(state, f"{model.name}.save_weights({str(path)!r})")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    data = _st_save(tensors, metadata={"format": FORMAT, "tensors_sha256": _tensors_sha(tensors),
                                       **versions()})
    return write_file(path, data)


def load_weights(model, filepath) -> None:
    """Read a ``save_weights`` file into ``model`` (built), checking the tensors' sha256."""
    path = Path(filepath)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such weights file")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise DataFormatError(f"{path}: not a readable safetensors weights file ({e}); the "
                              "file is truncated, corrupted, or not rnnkit's") from None
    if metadata.get("format") != FORMAT:
        raise DataFormatError(f"{path}: not an rnnkit weights file (metadata format "
                              f"{metadata.get('format')!r})")
    if metadata.get("tensors_sha256") != _tensors_sha(tensors):
        raise ChecksumError(f"{path}: the tensors' sha256 does not match the one recorded at "
                            "save time; the file is corrupted")
    if not model.built:
        raise NotBuiltError(f"{model.name}: build the model before load_weights (call it on "
                            "data or build(input_shape))")
    load_state(model, tensors, path)


def _tensors_sha(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()

