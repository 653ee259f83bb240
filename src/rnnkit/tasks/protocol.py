"""What a task is: its own options, and how it reads data, builds, fits, scores and predicts.

Every run (``rnnkit train``, the doctor, ``evaluate``, ``predict``) goes through one :class:`Task`
found by name in the registry; :mod:`rnnkit.tasks.runs` keeps only what every run shares (the run
directory, config.json, checkpoints, resume). A new task is one module with a ``Task`` subclass
and its options dataclass, plus one ``register(...)`` call that the package imports::

    @dataclass
    class EchoOptions:
        width: int = 8

    class Echo(Task):
        name, options = "echo", EchoOptions
        def prepare(self, cfg, for_doctor=False): ...
        def build(self, cfg, prep): ...
        def evaluate(self, run, path, out_dir): ...

    register(Echo())

:class:`TrainConfig` holds the options every task has (data, model, epochs, optimizer, ...) and, in
``options``, the task's own dataclass. A common option left as ``None`` takes the task's default
(``Task.defaults``), then :data:`COMMON_DEFAULTS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError
from ..models import Model
from ..training import callbacks as _callbacks
from ..training import optimizers as _optimizers
from . import specs

COMMON_DEFAULTS: dict[str, Any] = {"model": "gru:32", "epochs": 10, "batch_size": 128,
                                   "optimizer": "rmsprop", "learning_rate": 1e-3, "patience": 0,
                                   "lr_decay": 1.0}


@dataclass
class TrainConfig:
    """Every option of ``rnnkit train``: the common ones here, the task's in ``options``.

    A TOML config uses the same names, flat (``from_flat``)."""

    task: str = "forecast"
    data: str = ""
    out: str = "run"
    model: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    learning_rate: float | None = None
    seed: int = 0
    threads: int = 0
    quiet: bool = False
    resume: str = ""
    checkpoint_every: int = 0
    patience: int | None = None
    lr_decay: float | None = None
    options: Any = None

    def __post_init__(self) -> None:
        task = get(self.task)
        if self.options is None:
            self.options = task.options()
        elif isinstance(self.options, dict):
            self.options = task.options(**self.options)
        for name, value in {**COMMON_DEFAULTS, **task.defaults}.items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    @classmethod
    def from_flat(cls, values: dict, where: str = "options") -> TrainConfig:
        """The config of flat ``values`` (common and task options side by side, as the command
        line and a TOML file give them); an option the task does not have raises ConfigError
        naming it and ``where``."""
        task = get(values.get("task") or cls.task)
        own = {f.name for f in dataclasses.fields(task.options)}
        unknown = sorted(set(values) - set(COMMON) - own)
        if unknown:
            raise ConfigError(f"{where}: {', '.join(unknown)}: not an option of task "
                              f"{task.name!r}; its options are {', '.join(sorted(own))}, and "
                              f"every task's {', '.join(COMMON)}")
        options = task.options(**{k: v for k, v in values.items() if k in own})
        return cls(**{k: v for k, v in values.items() if k in COMMON}, options=options)

    def flat(self) -> dict:
        """Every option by name, common and the task's side by side (JSON values)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "options"}
        return {**out, **dataclasses.asdict(self.options)}

    def check(self) -> None:
        if not self.data:
            raise ConfigError("data: give the data file (--data FILE)")
        get(self.task).check_model(self)
        for name in ("epochs", "batch_size", "checkpoint_every"):
            if getattr(self, name) < (1 if name == "batch_size" else 0):
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.patience < 0 or not self.lr_decay > 0:
            raise ConfigError(f"patience, lr_decay: expected patience >= 0 and lr_decay > 0, got "
                              f"{self.patience}, {self.lr_decay}")
        get(self.task).check(self)


COMMON = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "options")


@dataclass
class Prepared:
    """A built, compiled, untrained model and the data ``fit`` gets: ``data`` holds x, y
    (None for a stream of batches) and validation_data; ``source`` maps rows back to the file."""

    preprocessing: dict
    model: Model
    data: dict
    source: dict | None = None


@dataclass
class Run:
    """A trained (or reloaded) model with what it needs to read new data."""

    config: TrainConfig
    preprocessing: dict
    model: Model
    history: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


class Task:
    """One task's behaviour; subclasses set ``name`` and ``options`` and override the steps."""

    name: ClassVar[str] = ""
    options: ClassVar[type] = object
    defaults: ClassVar[dict] = {}  # common options this task defaults differently
    help: ClassVar[dict[str, str]] = {}  # --help text of the task's options
    metrics: ClassVar[list[str] | None] = ["acc"]  # what a reloaded model is compiled with
    custom_objects: ClassVar[dict] = {}  # classes load_model needs for this task's models

    def check(self, cfg: TrainConfig) -> None:
        """The task's options, before any file is read (each error names its option)."""

    def check_model(self, cfg: TrainConfig) -> None:
        specs.parse(cfg.model)

    def prepare(self, cfg: TrainConfig, for_doctor: bool = False) -> Prepared:
        raise NotImplementedError

    def build(self, cfg: TrainConfig, prep: dict) -> Model:
        raise NotImplementedError

    def fit(self, cfg: TrainConfig, ready: Prepared, **fit_options):
        """Train ``ready.model``; ``fit_options`` are Model.fit's (epochs, callbacks, ...)."""
        return ready.model.fit(ready.data["x"], ready.data["y"], batch_size=cfg.batch_size,
                               **fit_options)

    def evaluate(self, run: Run, path: str, out_dir: Path | None) -> dict:
        """The metrics.json of ``run`` on the data at ``path`` (plots into ``out_dir``)."""
        raise NotImplementedError

    def predict(self, run: Run, path: str, future: str | None = None
                ) -> tuple[list[str], list[list]]:
        """(header, rows) of predictions for the data at ``path`` (``future``: a file of values
        known in advance, for tasks that read them)."""
        raise ConfigError(f"predict: a {self.name!r} run has no predict; use "
                          "'rnnkit generate DIR --prompt ...'")

    def loss(self, cfg: TrainConfig, prep: dict):
        """The loss a reloaded model is compiled with."""
        return "sparse_categorical_crossentropy"

    def summary(self, metrics: dict) -> list[str]:
        """Lines the CLI prints after training or evaluation, beyond the model's metrics."""
        return []

    def write(self, run: Run, out: Path) -> None:
        """Task-specific files of the run directory (beside model/, metrics.json, ...)."""


REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Make ``task`` known to ``rnnkit train --task NAME`` and to every run."""
    REGISTRY[task.name] = task
    return task


def get(name: str) -> Task:
    if name not in REGISTRY:
        raise ConfigError(f"task: expected one of {tuple(REGISTRY)}, got {name!r}")
    return REGISTRY[name]


def optimizer(cfg: TrainConfig) -> _optimizers.Optimizer:
    """The named optimizer at ``cfg.learning_rate``, gradients clipped to norm 1 per tensor."""
    cls = type(_optimizers.get(cfg.optimizer, "optimizer"))
    return cls(learning_rate=cfg.learning_rate, clipnorm=1.0)


def decay_schedule(learning_rate: float, factor: float, start: int) -> Callable[[int], float]:
    """Epoch (0-based) -> ``learning_rate · factor^max(0, epoch - start)``: SegRNN's schedule is
    (0.8, 3), LTSF-Linear's (0.5, 1)."""
    return lambda epoch: float(learning_rate * factor ** max(0, epoch - start))


def training_callbacks(learning_rate: float, patience: int = 0, lr_decay: float = 1.0,
                       decay_start: int = 3) -> list[_callbacks.Callback]:
    """Early stopping on the validation loss with the best epoch's weights restored (when
    ``patience`` > 0) and the learning rate decayed by ``lr_decay`` per epoch after
    ``decay_start`` epochs (when it is not 1)."""
    out: list[_callbacks.Callback] = []
    if patience > 0:
        out.append(_callbacks.EarlyStopping(patience=patience, restore_best_weights=True))
    if lr_decay != 1.0:
        out.append(_callbacks.LearningRateScheduler(
            decay_schedule(learning_rate, lr_decay, decay_start)))
    return out


def holdout(n: int, fraction: float) -> int:
    """The first index of the held-out tail of ``n`` samples; both parts non-empty."""
    cut = int(round(n * (1.0 - fraction)))
    if not 0 < cut < n:
        raise ConfigError(f"validation_fraction {fraction} leaves an empty part of {n} samples")
    return cut


def check_fraction(value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"validation_fraction: must be in (0, 1), got {value}")


def check_positive(options, *names: str) -> None:
    for name in names:
        if getattr(options, name) < 1:
            raise ConfigError(f"{name}: must be positive, got {getattr(options, name)}")

