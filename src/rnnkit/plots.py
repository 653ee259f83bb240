"""PNG figures of a run with matplotlib's Agg backend: curves, forecasts, confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: dict[str, list[float]], path: str | Path) -> None:
    """One panel per metric: training and validation values by epoch."""
    plt = _pyplot()
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
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.2 * len(classes) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes,
           yticklabels=classes, xlabel="predicted", ylabel="true", title="confusion matrix")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
