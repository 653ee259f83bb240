"""Every figure rnnkit draws, as PNG files with matplotlib's Agg backend: training curves, the
test forecasts and confusion matrix of a run, and what the doctor and ``diagnosis.inside`` measure
(gradient through time, gate saturation, hidden states).

matplotlib is optional (the ``plots`` extra); it is imported on first use with the Agg backend,
so plots are written to files and never need a display. Without it, the doctor's figures raise
MissingDependencyError saying how to install it, and a run's figures (training curves, forecast,
confusion matrix) are skipped with one line on stderr, said once: everything else is written.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import optional
from .errors import ConfigError, DataFormatError

_told = False


def _pyplot():
    matplotlib = optional.require("matplotlib", "plotting")
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    return plt


def _run_pyplot():
    """For a run's figures: pyplot, or None (said once) when matplotlib is not installed."""
    global _told
    if not optional.available("matplotlib"):
        if not _told:
            print(f"rnnkit: plots skipped (matplotlib is not installed): "
                  f"{optional.install_hint('matplotlib')}", file=sys.stderr)
            _told = True
        return None
    return _pyplot()


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def plot_gradient_through_time(norms, path, title: str = "gradient through time") -> Path:
    """‖∂L/∂h_t‖ against t on a log scale; ``norms`` (T,) or {label: (T,)} to compare layers."""
    series = norms if isinstance(norms, Mapping) else {"‖∂L/∂h_t‖": norms}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        values = np.asarray(values, dtype=np.float64)
        # zeros (underflow) cannot be drawn on a log axis: show them at the smallest positive value
        floor = values[values > 0].min() if (values > 0).any() else 1e-300
        ax.semilogy(np.arange(len(values)), np.maximum(values, floor), label=label)
    ax.set_xlabel("time step t")
    ax.set_ylabel("‖∂L/∂h_t‖")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def plot_gate_statistics(stats: Mapping, path, title: str = "gate saturation") -> Path:
    """Per gate, the mean activation and the saturated fraction over time (from gate_statistics)."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for name, s in stats.items():
        top.plot(s["mean"], label=f"{name} mean")
        bottom.plot(s["saturated"], label=f"{name} saturated")
    top.set_ylabel("mean gate value")
    bottom.set_ylabel("fraction saturated")
    bottom.set_xlabel("time step t")
    top.set_title(title)
    top.legend()
    bottom.legend()
    return _save(fig, path)


def plot_hidden_states(states, path, sample: int = 0, title: str = "hidden states") -> Path:
    """A heatmap of h_t: units down, time across. ``states`` (T, H) or (B, T, H) (one sample)."""
    states = np.asarray(states)
    if states.ndim == 3:
        states = states[sample]
    if states.ndim != 2:
        raise ConfigError(f"plot_hidden_states: expected states of shape (T, H) or (B, T, H), "
                          f"got {states.shape}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    image = ax.imshow(states.T, aspect="auto", cmap="RdBu_r", interpolation="nearest")
    fig.colorbar(image, ax=ax)
    ax.set_xlabel("time step t")
    ax.set_ylabel("unit")
    ax.set_title(title)
    return _save(fig, path)


def read_history(history) -> dict[str, list[float]]:
    """Training curves as {key: values per epoch}, from a History, its dict, or a CSV file
    written by CSVLogger (an ``epoch`` column and one column per key)."""
    if isinstance(history, (str, Path)):
        return _read_history_csv(Path(history))
    curves = getattr(history, "history", history)
    if not isinstance(curves, Mapping):
        raise ConfigError(f"plot_history: expected a History, a dict or a CSV path, "
                          f"got {type(history).__name__}")
    return {k: [float(v) for v in vals] for k, vals in curves.items()}


def _read_history_csv(path: Path) -> dict[str, list[float]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataFormatError(f"{path}: no epochs in the history file")
    curves: dict[str, list[float]] = {}
    for line, row in enumerate(rows, start=2):
        for key, cell in row.items():
            if key == "epoch":
                continue
            try:
                curves.setdefault(key, []).append(float(cell))
            except (TypeError, ValueError):
                raise DataFormatError(f"{path}: line {line}, column {key!r}: expected a number, "
                                      f"got {cell!r}") from None
    return curves


def plot_history(history, path, title: str = "training") -> Path:
    """Loss and each metric against epoch, training and validation (``val_*``) on one panel each."""
    curves = read_history(history)
    names = [k for k in curves if not k.startswith("val_") and k not in ("lr", "learning_rate")]
    if not names:
        raise ConfigError(f"plot_history: no training curves in {sorted(curves)}")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = np.arange(1, len(curves[name]) + 1)
        ax.plot(epochs, curves[name], "o-", label=f"training {name}")
        if f"val_{name}" in curves:
            ax.plot(epochs, curves[f"val_{name}"], "s--", label=f"validation {name}")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def training_curves(history: dict[str, list[float]], path: str | Path) -> Path | None:
    """One panel per metric: training and validation values by epoch (a run's history); None,
    with nothing written, without matplotlib."""
    if _run_pyplot() is None:
        return None
    return plot_history(history, path)


def forecast(truth: np.ndarray, predicted: dict[str, np.ndarray], path: str | Path,
             title: str) -> None:
    """The truth and each named forecast along the test windows (first horizon step)."""
    plt = _run_pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(truth, label="truth", color="black", linewidth=1)
    for name, values in predicted.items():
        ax.plot(values, label=name, linewidth=1)
    ax.set(xlabel="test window", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion(matrix: np.ndarray, classes: list[str], path: str | Path) -> None:
    """Counts with true classes as rows and predicted classes as columns."""
    plt = _run_pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.2 * len(classes) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes,
           yticklabels=classes, xlabel="predicted", ylabel="true", title="confusion matrix")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
