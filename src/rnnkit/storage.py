"""Files that survive a crash, and what rnnkit writes into them: atomic directories, safetensors
tensors checked by sha256, JSON headers with a format and version.

``write_directory`` writes to a temporary sibling directory, fsyncs it and renames it into place:
a crash at any moment leaves the previous directory whole (between the two renames of an
overwrite it sits at ``.NAME.old``, where ``existing_directory`` finds it). Model directories
(``rnnkit.models.persistence``) and training checkpoints (``rnnkit.training.checkpoint``) are both
written this way. Reading uses JSON and safetensors only, never pickle.
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

from .errors import ChecksumError, ConfigError, DataFormatError, NonFiniteError
from .version import __version__


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


def write_file(path, data: bytes) -> Path:
    """Replace the file ``path`` by ``data`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
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


# -- state dicts ----------------------------------------------------------------------------------
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
