"""The NaN guard of ``fit``: a non-finite loss, gradient or weight never survives a batch.

Before each batch the guard keeps the weights, the optimizer state and the running metrics; after
it, it checks the batch's loss, every gradient and every weight. On a non-finite value, by
``on_nan``:

  'rollback' (default)  restore the state from before the batch, multiply the learning rate by
                        ``lr_factor`` and go on with the next batch; after ``max_rollbacks``
                        rollbacks in a row training stops (the data itself is likely broken);
  'stop'                restore the state from before the batch and stop training;
  'raise'               restore the state from before the batch and raise NonFiniteError;
  None                  no guard (Keras's behaviour: TerminateOnNaN is then the only help).

Each event is reported as a NonFiniteWarning naming the epoch, the batch and what went bad, with
the doctor's short findings on that batch; ``events`` (also ``history.nan_events``) keeps them.
The doctor lives in ``rnnkit.diagnosis``, a floor above training: it registers itself here
(``register_doctor``) when it is imported, which ``import rnnkit`` does.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError, NonFiniteError
from ..layers.recurrent import RNN

MODES = ("rollback", "stop", "raise", None)
_DOCTOR: Callable | None = None  # doctor(model, x, y, batch_size=) -> a report with .findings


def register_doctor(doctor: Callable | None) -> Callable | None:
    """Use ``doctor`` for the findings of NaN events; returns the one it replaces."""
    global _DOCTOR
    previous, _DOCTOR = _DOCTOR, doctor
    return previous


class NonFiniteWarning(RuntimeWarning):
    """The NaN guard rolled back or stopped training."""


@dataclass
class NanEvent:
    """One non-finite batch: where (epoch, batch; 0-based), what, and what the guard did."""

    epoch: int
    batch: int
    what: str
    action: str
    learning_rate: tuple[float, float]
    findings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"non-finite {self.what} at epoch {self.epoch + 1}, batch {self.batch}: {self.action}"
        if self.findings:
            text += "\n  the doctor finds:\n" + "\n".join(f"  - {f}" for f in self.findings)
        return text


class NanGuard:
    """Checks each training batch of ``model`` (see the module docstring)."""

    def __init__(self, model, on_nan="rollback", lr_factor: float = 0.5, max_rollbacks: int = 3):
        if on_nan not in MODES:
            raise ConfigError(f"fit: on_nan must be one of {MODES}, got {on_nan!r}")
        if not 0.0 < float(lr_factor) < 1.0:
            raise ConfigError(f"fit: nan_lr_factor must be in (0, 1), got {lr_factor!r}")
        self.model, self.mode, self.lr_factor = model, on_nan, float(lr_factor)
        self.max_rollbacks = int(max_rollbacks)
        self.in_a_row = 0
        self.events: list[NanEvent] = []

    def step(self, batch, epoch: int, step: int) -> dict:
        """``model.train_step(batch)`` under the guard; returns the logs to report."""
        if self.mode is None:
            return self.model.train_step(batch)
        saved = self._snapshot()
        logs = self.model.train_step(batch)
        what = self._what_is_bad()
        if what is None:
            self.in_a_row = 0
            return logs
        self._restore(saved)
        self._handle(what, batch, epoch, step)
        return {m.name: m.result() for m in self.model.metrics}

    # -- checks ------------------------------------------------------------------------------
    def _what_is_bad(self) -> str | None:
        if not math.isfinite(self.model.loss_tracker.total):
            return "loss"
        checks = [("gradient", lambda p: p.grad), ("weight", lambda p: p)]
        if getattr(getattr(self.model, "precision", None), "scaler", None) is not None:
            checks = checks[1:]  # fp16's gradient scaler skips overflowed steps itself
        for kind, tensors in checks:
            for name, p in self.model.named_parameters():
                t = tensors(p)
                if t is not None and not bool(torch.isfinite(t).all()):
                    return f"{kind} of {name}"
        return None

    # -- state -------------------------------------------------------------------------------
    def _snapshot(self) -> tuple:
        model, opt = self.model, self.model.optimizer
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        opt_state = {p: {k: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
                         for k, v in s.items()} for p, s in opt.torch_optimizer.state.items()}
        metrics = [copy.deepcopy(m.__dict__) for m in model.metrics]
        # states carried from batch to batch (stateful layers, TBPTT windows): a rolled-back
        # batch leaves the next one the state it started from
        carried = [(m, m.states) for m in model.modules() if isinstance(m, RNN) and m.stateful]
        return weights, opt_state, opt.iterations, metrics, carried

    def _restore(self, saved: tuple) -> None:
        weights, opt_state, iterations, metrics, carried = saved
        for layer, states in carried:
            layer.states = states
        model, opt = self.model, self.model.optimizer
        model.load_state_dict(weights)
        opt.torch_optimizer.state.clear()
        opt.torch_optimizer.state.update(opt_state)
        opt.iterations = iterations
        opt.zero_grad()
        for m, state in zip(model.metrics, metrics):
            m.__dict__.update(state)

    # -- actions -----------------------------------------------------------------------------
    def _handle(self, what: str, batch, epoch: int, step: int) -> None:
        opt = self.model.optimizer
        lr = opt.learning_rate
        self.in_a_row += 1
        if self.mode == "rollback" and self.in_a_row <= self.max_rollbacks:
            opt.learning_rate = lr * self.lr_factor
            action = (f"rolled back to the weights and optimizer state before this batch and "
                      f"lowered the learning rate {lr:.3g} -> {opt.learning_rate:.3g}")
        elif self.mode == "rollback":
            action = (f"{self.in_a_row} non-finite batches in a row: restored the last good "
                      f"weights and stopped training (the data or the setup is broken)")
        else:
            action = "restored the weights from before this batch and stopped training"
        event = NanEvent(epoch, step, what, action, (lr, opt.learning_rate),
                         doctor_findings(self.model, batch))
        self.events.append(event)
        if self.mode == "raise":
            raise NonFiniteError(f"fit: {event}")
        if self.mode != "rollback" or self.in_a_row > self.max_rollbacks:
            self.model.stop_training = True
        warnings.warn(f"rnnkit NaN guard: {event}", NonFiniteWarning, stacklevel=4)


def doctor_findings(model, batch, limit: int = 3) -> list[str]:
    """The doctor's errors and warnings on the bad batch, one line each (empty when no doctor is
    registered). The doctor gets a copy: its probe steps must not train the model."""
    if _DOCTOR is None:
        return []
    x, y = batch[0], batch[1]
    try:
        report = _DOCTOR(copy.deepcopy(model), x, y, batch_size=len(x))
    except Exception as e:  # a failing diagnosis must not hide the NaN report itself
        return [f"(the doctor could not run on this batch: {type(e).__name__}: {e})"]
    picked = [f for f in report.findings if f.severity in ("error", "warning")][:limit]
    return [f"[{f.check}] {f.message} Fix: {f.suggestion}" for f in picked]
