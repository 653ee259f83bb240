"""Training checkpoints that lose nothing, and repeatable runs: ``fit(seed=, checkpoint_dir=,
checkpoint_every=, resume=)``.

A training checkpoint is a directory, written atomically like a model directory:
  state.safetensors  the model's state_dict, the optimizer's tensors, the torch and numpy RNG
                     states, the feed's tensors (an epoch's data order, TBPTT's carried
                     states), tensors of callback states;
  training.json      epoch and step, the optimizer's other state (learning rate, iterations),
                     running metrics, callback states, History, Python's RNG state, where the
                     feed is (``state_dict`` of the batch stream, of a streamed dataset with its
                     shuffling RNG, or of the TBPTT windows) and what data it was made on,
                     versions, and the sha256 of state.safetensors.
It is saved every ``checkpoint_every`` optimizer steps (mid-epoch, right after a batch), or after
every epoch when ``checkpoint_every`` is None. ``resume=DIR`` puts all of it back at the point
where it was taken (a mid-epoch checkpoint after the epoch's on_epoch_begin, an epoch-end one
before it), so a run killed at any moment and resumed ends with the same weights as a run that
was never interrupted, on the same machine, thread count and rnnkit version. Loading reads JSON and
safetensors only.
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import storage as _storage
from ..errors import ChecksumError, ConfigError, DataFormatError, NonFiniteError
from . import callbacks as _callbacks
from . import metrics as _metrics
from .data import device_of

FORMAT = "rnnkit-training"
FORMAT_VERSION = 2  # 1 stored an array order where 2 stores the feed's state (both are read)
TRAINING_FILE = "training.json"
STATE_FILE = "state.safetensors"


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (``fit(seed=N)``)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"fit: seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


# -- tensors inside JSON -------------------------------------------------------------------------
def pack(obj, prefix: str, tensors: dict):
    """``obj`` as JSON with each tensor moved to ``tensors[key]`` and replaced by
    ``{"__tensor__": key}``; dicts with non-string keys become ``{"__items__": [[k, v], ...]}``."""
    if isinstance(obj, np.ndarray):
        obj = torch.from_numpy(obj.copy())
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: pack(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, pack(v, f"{prefix}/{i}", tensors)]
                              for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return [pack(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ConfigError(f"training checkpoint: cannot store a {type(obj).__name__} at {prefix}")


def unpack(obj, tensors: dict):
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: unpack(v, tensors) for k, v in obj["__items__"]}
        return {k: unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    return obj


# -- RNG and metric states -----------------------------------------------------------------------
def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                       "has_gauss": has_gauss, "cached_gaussian": cached},
             "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def metric_states(model) -> list[dict]:
    """Running totals of the loss and metrics (an 'acc' metric resolved on its first batch
    records which accuracy it became)."""
    out = []
    for m in model.metrics:
        inner = getattr(m, "resolved", m)
        out.append(None if inner is None else
                   {"class": type(inner).__name__, "total": inner.total, "count": inner.count})
    return out


def set_metric_states(model, states: list) -> None:
    for m, state in zip(model.metrics, states):
        if state is None:
            continue
        if hasattr(m, "resolved") and m.resolved is None:
            m.resolved = getattr(_metrics, state["class"])(name=m.name)
        inner = getattr(m, "resolved", m)
        inner.total, inner.count = state["total"], state["count"]


def _stateful(cbs) -> list:
    return [cb for cb in cbs.callbacks
            if hasattr(cb, "get_state") or isinstance(cb, _callbacks.History)]


def _callback_state(cb) -> dict:
    if isinstance(cb, _callbacks.History):
        return {"history": cb.history, "epoch": cb.epoch}
    return cb.get_state()


def _set_callback_state(cb, state: dict) -> None:
    if isinstance(cb, _callbacks.History):
        cb.history, cb.epoch = state["history"], state["epoch"]
    else:
        cb.set_state(state)


# -- the run -------------------------------------------------------------------------------------
class TrainingRun:
    """The checkpointing side of one ``fit``: periodic saves and resume.

    Inactive (no checkpoint_dir, no resume) it only hands out the feed's batches. Active, it
    needs a feed that can say where it is (arrays, TBPTT windows, or an iterable with
    ``state_dict``/``load_state_dict``) and refuses any other before training starts.
    """

    def __init__(self, model, feed, directory=None, every=None, resume=None):
        if every is not None and (not isinstance(every, (int, np.integer)) or every <= 0
                                  or isinstance(every, bool)):
            raise ConfigError(f"fit: checkpoint_every must be a positive integer (optimizer "
                              f"steps) or None, got {every!r}")
        if every is not None and directory is None and resume is None:
            raise ConfigError("fit: checkpoint_every needs checkpoint_dir (where to save)")
        self.model, self.feed, self.every = model, feed, every
        self.active = directory is not None or resume is not None
        self.directory = None if directory is None else Path(directory)
        self.global_step, self.pending = 0, False
        self.saved: dict | None = None
        self.resumed_epoch: int | None = None
        if not self.active:
            return
        if not feed.resumable:
            raise ConfigError(
                f"fit: checkpoint_dir/resume need data that can say where it is: arrays, or an "
                f"iterable of batches with state_dict()/load_state_dict() (its position and "
                f"shuffling RNG); x is a {type(feed.source).__name__}, which cannot, so a "
                "resumed run could not continue where this one stops")
        if resume is not None:
            self.saved = read_checkpoint(resume)
            self._check_fits(Path(resume))
            self.resumed_epoch = self.saved["json"]["epoch"]
            if self.directory is None:
                self.directory = Path(resume)

    def first_epoch(self, initial_epoch: int) -> int:
        return initial_epoch if self.resumed_epoch is None else self.resumed_epoch

    def begin(self, cbs) -> None:
        """After on_train_begin: put back an epoch-end checkpoint."""
        if self.saved is not None and self.saved["json"]["step"] == 0:
            self._restore(cbs)

    def batches(self, epoch: int, cbs):
        """(step, batch) of this epoch, after on_epoch_begin; a mid-epoch checkpoint is put
        back here and its epoch continues after the last step it had done."""
        first = self._restore(cbs) if self.saved is not None else 0
        return enumerate(self.feed.epoch(first), start=first)

    def after_step(self, epoch: int, step: int, cbs) -> None:
        """After on_train_batch_end: save every ``every`` steps; a save due on an epoch's last
        step waits for the epoch's end (validation, on_epoch_end) and is made there."""
        if not self.active:
            return
        self.global_step += 1
        if self.every is not None and self.global_step % self.every == 0:
            last = self.feed.steps_per_epoch
            if (last is None or step + 1 < last) and not self.model.stop_training:
                self.save(epoch, step + 1, cbs)
            else:
                self.pending = True

    def end_epoch(self, epoch: int, cbs) -> None:
        """After on_epoch_end."""
        if self.active and (self.every is None or self.pending):
            self.save(epoch + 1, 0, cbs)
            self.pending = False

    # -- saving ------------------------------------------------------------------------------
    def save(self, epoch: int, step: int, cbs) -> None:
        model, opt = self.model, self.model.optimizer
        tensors: dict = {}
        weights = model.state_dict()
        try:
            _storage.check_finite(weights, f"training checkpoint {self.directory}")
        except NonFiniteError as e:
            warnings.warn(f"{e}; epoch {epoch + 1} step {step} not checkpointed, the previous "
                          "checkpoint stays", RuntimeWarning, stacklevel=3)
            return
        info = {
            "format": FORMAT, "format_version": FORMAT_VERSION, **_storage.versions(),
            "epoch": epoch, "step": step, "global_step": self.global_step,
            "data": self.feed.describe(),
            "model": pack(dict(weights), "model", tensors),
            "optimizer": {"class": type(opt).__name__, "learning_rate": opt.learning_rate,
                          "iterations": opt.iterations,
                          "torch": pack(opt.torch_optimizer.state_dict(), "optimizer", tensors)},
            "metrics": metric_states(model),
            "callbacks": [{"class": type(cb).__name__,
                           "state": pack(_callback_state(cb), f"callbacks/{i}", tensors)}
                          for i, cb in enumerate(_stateful(cbs))],
            "rng": pack(rng_state(), "rng", tensors),
            "feed": pack(self.feed.state_dict(), "feed", tensors),
        }
        data = _storage.tensors_bytes(tensors)
        info["state_sha256"] = _storage.sha256(data)
        text = json.dumps(info, indent=1).encode()
        _storage.write_directory(self.directory, {STATE_FILE: data, TRAINING_FILE: text},
                                 overwrite=True, marker=TRAINING_FILE)

    # -- resuming ----------------------------------------------------------------------------
    def _check_fits(self, path: Path) -> None:
        info = self.saved["json"]
        now = self.feed.describe()
        if info["data"] != now:
            raise ConfigError(f"resume: {path} was made on {info['data']}, this fit has {now}; "
                              "resume with the same data, batch_size and shuffle")
        opt = type(self.model.optimizer).__name__
        if info["optimizer"]["class"] != opt:
            raise ConfigError(f"resume: {path} was made with optimizer "
                              f"{info['optimizer']['class']}, this model is compiled with {opt}")

    def _restore(self, cbs) -> int:
        """Put the checkpoint back; returns the step to continue from."""
        info, tensors, path = self.saved["json"], self.saved["tensors"], self.saved["path"]
        self.saved = None
        model, opt = self.model, self.model.optimizer
        _ready(model, self.feed.example(), path)
        _storage.load_state(model, unpack(info["model"], tensors), path / STATE_FILE)
        opt.torch_optimizer.load_state_dict(unpack(info["optimizer"]["torch"], tensors))
        opt.learning_rate, opt.iterations = (info["optimizer"]["learning_rate"],
                                             info["optimizer"]["iterations"])
        set_metric_states(model, info["metrics"])
        self._restore_callbacks(cbs, info["callbacks"], tensors, path)
        self.global_step = info["global_step"]
        set_rng_state(unpack(info["rng"], tensors))
        self.feed.load_state_dict(_feed_state(info, tensors))
        return info["step"]

    @staticmethod
    def _restore_callbacks(cbs, saved: list, tensors: dict, path: Path) -> None:
        current = _stateful(cbs)
        names = [type(cb).__name__ for cb in current]
        if names != [s["class"] for s in saved]:
            raise ConfigError(f"resume: {path} was made with the callbacks "
                              f"{[s['class'] for s in saved]} (those with state), this fit has "
                              f"{names}; pass the same callbacks")
        for cb, s in zip(current, saved):
            _set_callback_state(cb, unpack(s["state"], tensors))


def _ready(model, example, path: Path) -> None:
    """The model built (from ``example``) and its optimizer too, so the state can go in."""
    if example is not None:
        model.build_from_batch(example.to(device_of(model)))
    if not model.built:
        raise ConfigError(f"resume: {path}: build the model before resuming (model.build("
                          "input_shape) or call it on a batch): the data is a stream, so there "
                          "is no array to build it from")
    if not model.optimizer.built:
        model.optimizer.build(model.parameters())


def _feed_state(info: dict, tensors: dict) -> dict:
    """The feed's state; a format-1 checkpoint stored only an array order and its step."""
    if info["format_version"] >= 2:
        return unpack(info["feed"], tensors)
    mid_epoch = info["step"] > 0
    return {"order": unpack(info["order"], tensors) if mid_epoch else None,
            "position": info["step"], "passes": info["epoch"] + int(mid_epoch)}


def read_checkpoint(path) -> dict:
    """The checked contents of a training checkpoint: {"json", "tensors", "path"}."""
    directory = _storage.existing_directory(path)
    if not (directory / TRAINING_FILE).is_file():
        raise DataFormatError(f"resume: {path}: no training checkpoint here (no {TRAINING_FILE}); "
                              "give the checkpoint_dir of an earlier fit")
    info = _storage.read_json(directory / TRAINING_FILE)
    if info.get("format_version") == 1:  # read as version 1, continued as version 2
        _storage.check_version(info, directory / TRAINING_FILE, FORMAT, 1)
    else:
        _storage.check_version(info, directory / TRAINING_FILE, FORMAT, FORMAT_VERSION)
    if not isinstance(info.get("state_sha256"), str):
        raise ChecksumError(f"{directory / TRAINING_FILE}: no state_sha256; cannot verify "
                            f"{STATE_FILE}")
    tensors = _storage.read_tensors(directory / STATE_FILE, info["state_sha256"])
    return {"json": info, "tensors": tensors, "path": directory}
