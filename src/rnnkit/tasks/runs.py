"""Whole runs, from a data file to a run directory, for any registered task.

A run directory holds ``config.json`` (the task and its options, written before training),
``model/`` (``Model.save``: weights, architecture, and as ``preprocessing`` the options plus what
reading new data needs: vectorizer vocabularies, normalizer statistics, classes), ``checkpoint/``
(the last training checkpoint: every run resumes exactly with ``--resume DIR``), ``history.csv``,
``metrics.json`` and the task's plots. What differs between tasks is the task's
(:mod:`rnnkit.tasks.protocol`); this module knows none of them.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .. import plots
from ..errors import ConfigError, DataFormatError
from ..models import load_model
from ..training.checkpoint import seed_everything
from . import protocol
from .protocol import Prepared, Run, TrainConfig

CHECKPOINT = "checkpoint"  # the run directory's training checkpoint
# Options that may differ from a resumed run's saved ones: they do not change what was trained
# (epochs continues a finished run further; the last resume is recorded)
RESUME_MAY_CHANGE = ("resume", "quiet", "threads", "epochs")


def prepare(cfg: TrainConfig, for_doctor: bool = False) -> Prepared:
    """Read the data, fit the preprocessing on the training part, build the model.

    ``for_doctor``: read broken data anyway, so the doctor reports every problem at once (the
    task lists unreadable cells in ``source["bad_cells"]``)."""
    cfg.check()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    return protocol.get(cfg.task).prepare(cfg, for_doctor)


def train(cfg: TrainConfig) -> Run:
    """Train, score on the held-out data and write the run directory ``cfg.out``.

    The options go to ``cfg.out/config.json`` first, and a training checkpoint to
    ``cfg.out/checkpoint`` after every epoch (every ``cfg.checkpoint_every`` optimizer steps when
    given), so a run killed at any moment continues exactly with ``--resume cfg.out`` (see
    ``resume_config``); ``cfg.resume`` names that run directory (or its checkpoint)."""
    task = protocol.get(cfg.task)
    ready = prepare(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_config(cfg, out)
    callbacks = protocol.training_callbacks(cfg.learning_rate, cfg.patience, cfg.lr_decay)
    history = task.fit(cfg, ready, epochs=cfg.epochs,
                       validation_data=ready.data["validation_data"],
                       verbose=0 if cfg.quiet else 1, seed=cfg.seed, callbacks=callbacks,
                       checkpoint_dir=out / CHECKPOINT,
                       checkpoint_every=cfg.checkpoint_every or None,
                       resume=_checkpoint_to_resume(cfg))
    run = Run(cfg, ready.preprocessing, ready.model, history.history)
    # scored and written aside, then moved in: a failure leaves no half-written run directory
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        run.metrics = task.evaluate(run, cfg.data, Path(tmp))
        save(run, Path(tmp))
        for item in Path(tmp).iterdir():
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    return run


def resume_config(directory: str | Path, given: dict | None = None) -> TrainConfig:
    """The options of the run in ``directory`` (its config.json), to continue it: ``given``
    options (flat, from the command line) must agree with them, except ``RESUME_MAY_CHANGE``;
    ``directory`` may also be the run's checkpoint directory."""
    directory = Path(directory)
    if not (directory / "config.json").is_file() and (directory.parent / "config.json").is_file() \
            and directory.name == CHECKPOINT:
        directory = directory.parent
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"resume: {directory}: not a run directory (no config.json); "
                                "give the --out directory of the run to continue")
    cfg = read_config(path)
    saved = cfg.flat()
    for key, value in (given or {}).items():
        if key in RESUME_MAY_CHANGE or key not in saved:
            continue
        if not _same_option(key, value, saved[key]):
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"resume: {flag} {value!r} contradicts the run's {key} "
                              f"{saved[key]!r} ({path}); leave it out to continue the run "
                              "as it was, or train a new run")
    cfg.resume, cfg.out = str(directory), str(directory)
    return cfg


def _same_option(key: str, given, saved) -> bool:
    if key in ("data", "out") and given and saved:
        return Path(given).resolve() == Path(saved).resolve()
    return given == saved


def _checkpoint_to_resume(cfg: TrainConfig) -> Path | None:
    """The checkpoint ``cfg.resume`` continues from; None when the run to resume was killed
    before it wrote one (it then starts over, which ends the same)."""
    if not cfg.resume:
        return None
    resume = Path(cfg.resume)
    for candidate in (resume / CHECKPOINT, resume):
        if (candidate / "training.json").is_file():
            return candidate
    if (resume / "config.json").is_file() or resume.name == CHECKPOINT:
        return None
    raise FileNotFoundError(f"resume: {resume}: neither a run directory nor a training "
                            "checkpoint")


def write_config(cfg: TrainConfig, out: Path) -> None:
    """``out/config.json``: the task and every option (flat), what ``--resume`` reads back."""
    (out / "config.json").write_text(json.dumps({"task": cfg.task, "train": cfg.flat()},
                                                indent=1))


def read_config(path: Path) -> TrainConfig:
    try:
        return TrainConfig.from_flat(json.loads(path.read_text(encoding="utf-8"))["train"],
                                     str(path))
    except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as e:
        raise DataFormatError(f"{path}: not a run's config.json ({e})") from None


def evaluate(run: Run, path: str, out_dir: Path | None = None) -> dict:
    """The run's metrics (the shape of its metrics.json) on the data at ``path``."""
    return protocol.get(run.config.task).evaluate(run, path, out_dir)


def predict(run: Run, path: str, future: str | None = None) -> tuple[list[str], list[list]]:
    """(header, rows) of predictions for the data at ``path`` (``future``: known-future
    covariates of a panel forecast)."""
    task = protocol.get(run.config.task)
    return task.predict(run, path) if future is None else task.predict(run, path, future)


def save(run: Run, out: Path) -> None:
    """Write config.json (the options), model/ (Model.save: weights, architecture and the
    preprocessing), history.csv, metrics.json, the training curves and the task's files."""
    write_config(run.config, out)
    run.model.preprocessing = {"task": run.config.task, "train": run.config.flat(),
                               **run.preprocessing}
    run.model.save(out / "model")
    (out / "metrics.json").write_text(json.dumps(run.metrics, indent=1))
    write_csv(out / "history.csv", ["epoch", *run.history],
              [[i + 1, *values] for i, values in enumerate(zip(*run.history.values()))])
    if run.history:
        plots.training_curves(run.history, out / "training_curves.png")
    protocol.get(run.config.task).write(run, out)


def load(directory: str | Path) -> Run:
    """A run directory back as a Run: the model (``load_model``), compiled for its task."""
    directory = Path(directory)
    if not (directory / "model" / "config.json").is_file():
        raise FileNotFoundError(f"{directory}: not a run directory (no model/config.json); "
                                "train one with 'rnnkit train ... --out DIR'")
    custom = {k: v for task in protocol.REGISTRY.values() for k, v in task.custom_objects.items()}
    model = load_model(directory / "model", custom_objects=custom)
    stored = dict(model.preprocessing)
    cfg = TrainConfig.from_flat(stored.pop("train"), str(directory / "model"))
    stored.pop("task")
    task = protocol.get(cfg.task)
    model.compile(protocol.optimizer(cfg), task.loss(cfg, stored), metrics=task.metrics)
    model.eval()
    return Run(cfg, stored, model)


def write_csv(path: str | Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
