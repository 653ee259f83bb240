"""PNG figures of a run with matplotlib's Agg backend: curves, forecasts, confusion matrix.

matplotlib is optional (the ``plots`` extra). Without it a run skips its figures and says so
once, on one line of stderr, with the command that installs it; everything else is written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .. import optional

_told = False


def _pyplot():
    """matplotlib.pyplot on the Agg backend, or None (said once) when it is not installed."""
    global _told
    if not optional.available("matplotlib"):
        if not _told:
            print(f"rnnkit: plots skipped (matplotlib is not installed): "
                  f"{optional.install_hint('matplotlib')}", file=sys.stderr)
            _told = True
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: dict[str, list[float]], path: str | Path) -> None:
    """One panel per metric: training and validation values by epoch."""
    plt = _pyplot()
    if plt is None:
        return
    keys = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], "o-", label="training")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s-", label="validation")
        ax.set(xlabel="epoch", title=key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def forecast(truth: np.ndarray, predicted: dict[str, np.ndarray], path: str | Path,
             title: str) -> None:
    """The truth and each named forecast along the test windows (first horizon step)."""
    plt = _pyplot()
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
    plt = _pyplot()
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
