"""Saving and loading models: safetensors weights plus a JSON config, written atomically.

A model directory holds
  model.safetensors  every entry of ``model.state_dict()`` (parameters and buffers);
  config.json        {"format": "rnnkit", "format_version": 1, "rnnkit_version", "torch_version",
                      "architecture": {"class_name", "config"}, "preprocessing": {...},
                      "weights_sha256": sha256 of model.safetensors}.
Loading reads JSON and safetensors only, never pickle, so a directory from a stranger cannot run
code. Writes go to a temporary sibling directory that is fsynced and renamed into place: a crash
at any moment leaves the previous checkpoint whole (between the two renames of an overwrite it
sits at ``.NAME.old``, and ``load_model`` finds it there).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from ..errors import ChecksumError, ConfigError, DataFormatError, NotBuiltError
from ..training.guard import NonFiniteError
from ..version import __version__

FORMAT = "rnnkit"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
KERAS_SUFFIXES = (".keras", ".weights.h5")


# -- atomic files and directories ----------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def backup_path(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.old"


def write_directory(directory, files: dict[str, bytes], overwrite: bool, marker: str) -> Path:
    """Replace ``directory`` by one holding ``files`` (name -> bytes), atomically.

    An existing directory is replaced only when it is empty or holds ``marker`` (one of our
    checkpoints): saving over a directory of other files is refused, never deleted.
    """
    directory = Path(directory)
    if directory.exists():
        if not overwrite:
            raise ConfigError(f"{directory}: already exists; pass overwrite=True to replace it")
        if not directory.is_dir() or (any(directory.iterdir())
                                      and not (directory / marker).is_file()):
            raise ConfigError(f"{directory}: exists and is not an rnnkit checkpoint directory "
                              f"(no {marker}); refusing to replace it, choose another path")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        for name, data in files.items():
            _write_synced(tmp / name, data)
        _fsync_dir(tmp)
        backup = backup_path(directory)
        if directory.exists():
            if backup.exists():
                shutil.rmtree(backup)
            os.rename(directory, backup)
        os.rename(tmp, directory)
        _fsync_dir(directory.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    return directory


def existing_directory(path) -> Path:
    """``path``, or the previous checkpoint an interrupted overwrite left at ``.NAME.old``."""
    path = Path(path)
    if not path.exists() and backup_path(path).is_dir():
        return backup_path(path)
    return path


# -- tensors -------------------------------------------------------------------------------------
def check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """NonFiniteError naming the first tensor with a NaN or inf: such weights are never saved."""
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise NonFiniteError(f"{where}: weight {key!r} has {bad} NaN/inf entries of "
                                 f"{t.numel()}; refusing to save a broken model (the NaN guard "
                                 f"of fit(on_nan='rollback') keeps the last good weights)")


def tensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """safetensors bytes of independent, contiguous CPU copies (safetensors refuses shared
    storage, which views and tied weights have)."""
    return _st_save({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_tensors(path: Path, expected_sha: str | None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, after checking its sha256 when one is expected."""
    if not path.is_file():
        raise DataFormatError(f"{path}: missing; the checkpoint directory is incomplete")
    data = path.read_bytes()
    if expected_sha is not None and sha256(data) != expected_sha:
        raise ChecksumError(f"{path}: sha256 {sha256(data)} does not match the "
                            f"{expected_sha} recorded at save time; the file is truncated or "
                            f"corrupted ({len(data)} bytes)")
    try:
        return _st_load(data)
    except (SafetensorError, ValueError) as e:
        raise DataFormatError(f"{path}: not a readable safetensors file ({e})") from None


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataFormatError(f"{path.parent}: not an rnnkit model directory (no {path.name})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: not valid JSON ({e}); the file is truncated or "
                              "corrupted") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def versions() -> dict:
    return {"rnnkit_version": __version__, "torch_version": torch.__version__}


def check_version(config: dict, path: Path, kind: str, format_version: int) -> None:
    """DataFormatError for a file that is not ours, of an unknown format version or from
    another major rnnkit version."""
    if config.get("format") != kind:
        raise DataFormatError(f"{path}: not an rnnkit {kind} file (format "
                              f"{config.get('format')!r}, expected {kind!r})")
    if config.get("format_version") != format_version:
        raise DataFormatError(f"{path}: unknown format_version {config.get('format_version')!r}; "
                              f"this rnnkit reads version {format_version}")
    ours, theirs = versions()["rnnkit_version"], str(config.get("rnnkit_version"))
    if theirs.split(".")[0] != ours.split(".")[0]:
        raise DataFormatError(f"{path}: written by rnnkit {theirs}, another major version than "
                              f"this rnnkit {ours}; load it with rnnkit {theirs.split('.')[0]}.x")


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
    if str(path).endswith(KERAS_SUFFIXES):
        return _load_keras(path)
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


def _load_keras(path):
    try:
        from ..interop import keras_file
    except ImportError:
        raise ConfigError(f"{path}: reading Keras files needs rnnkit.interop.keras_file, which "
                          "this rnnkit does not have") from None
    return keras_file.load_keras(path)


def _model_from_architecture(spec, directory: Path, custom_objects: dict | None):
    from .model import Model
    from .sequential import Sequential

    if not (isinstance(spec, dict) and isinstance(spec.get("config"), dict)):
        raise DataFormatError(f"{directory / CONFIG_FILE}: 'architecture' must be "
                              "{'class_name': ..., 'config': {...}}")
    name = spec.get("class_name")
    classes = {"Sequential": Sequential, **(custom_objects or {})}
    if name not in classes or not issubclass(classes[name], Model):
        raise ConfigError(f"{directory / CONFIG_FILE}: unknown model class {name!r}; pass "
                          f"custom_objects={{{name!r}: YourModel}}")
    try:
        return classes[name].from_config(spec["config"], custom_objects)
    except ConfigError as e:
        raise ConfigError(f"{directory / CONFIG_FILE}: cannot rebuild the model: {e}") from None


def load_state(model, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy ``state`` into ``model``; a DataFormatError naming ``path`` when keys or shapes
    differ from the model's."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = [f"{k}: model {tuple(own[k].shape)}, file {tuple(state[k].shape)}"
             for k in own if k in state and own[k].shape != state[k].shape]
    if missing or extra or wrong:
        raise DataFormatError(f"{path}: the weights do not fit {model.name}: missing "
                              f"{missing[:5]}, unexpected {extra[:5]}, wrong shapes {wrong[:5]}")
    floats = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(floats) == 1 and floats != {next(iter(own.values())).dtype}:
        model.to(dtype=floats.pop())
    model.load_state_dict(state)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        _write_synced(Path(tmp), data)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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

