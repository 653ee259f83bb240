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


def forecast(names: list[str], truth: np.ndarray, predicted: dict[str, np.ndarray],
             path: str | Path, ahead: int, horizon: int,
             interval: tuple[np.ndarray, np.ndarray] | None = None,
             levels: tuple[float, float] | None = None) -> None:
    """One panel per target: the truth and each named forecast (N, C') of the test windows at
    one horizon step, ``ahead`` rows after the window; ``interval`` (lower, upper) (N, C') is
    drawn as a band between the quantile ``levels``."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.6 * len(names) + 0.9), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[:, 0], names)):
        steps = np.arange(len(truth))
        if interval is not None:
            label = "interval" if levels is None else f"{levels[0]:g}-{levels[1]:g} quantiles"
            ax.fill_between(steps, interval[0][:, i], interval[1][:, i], color="tab:blue",
                            alpha=0.2, linewidth=0, label=label)
        ax.plot(steps, truth[:, i], label="truth", color="black", linewidth=1)
        for label, values in predicted.items():
            ax.plot(steps, values[:, i], label=label, linewidth=1)
        ax.set(ylabel=name, title=f"{name}: test forecasts {ahead} step(s) ahead "
               f"(step {ahead} of horizon {horizon})")
        ax.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("test window")
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
