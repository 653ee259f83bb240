"""One training step, one test step, one prediction step: the only ones in rnnkit.

``Model.train_step`` / ``test_step`` / ``predict_step`` call these, and fit (batches or TBPTT
windows alike) calls those, so an override of ``Model.train_step`` reaches every loop. The
doctor's probe steps call ``train_step`` here with an optimizer of their own and a look at the
gradients before each update. Each step runs under the model's precision (autocast, fp16 scaler)
and, in training, through the distribution strategy (DDP averages the gradients).

A batch is ``(x, y, sample_weight)``; the model's ``call_with_mask`` may add a mask of the output
steps that count ("don't care" elsewhere), which multiplies the sample weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import distributed, precision
from .losses import align_weight


def combine_weights(sample_weight: Tensor | None, mask: Tensor | None) -> Tensor | None:
    """The loss weights: the sample weights times the output mask (either may be None)."""
    if mask is None:
        return sample_weight
    mask = mask.float()
    if sample_weight is None:
        return mask
    return align_weight(sample_weight, mask) * mask


def compute_loss(model, y: Tensor, y_pred: Tensor, weight: Tensor | None, loss=None) -> Tensor:
    """The model's compiled loss (``model.compute_loss``), or ``loss`` in its place, plus the
    layers' weight penalties."""
    if loss is None:
        return model.compute_loss(y, y_pred, weight)
    return getattr(model, "loss_weight", 1.0) * loss(y, y_pred, weight) \
        + model.regularization_loss()


def train_step(model, batch, optimizer=None, loss=None,
               before_update: Callable[[Tensor], bool] | None = None) -> dict[str, float]:
    """One optimizer step on ``batch``; returns the running logs (``model.compute_metrics``).

    ``optimizer`` and ``loss`` default to the compiled ones. ``before_update(loss)`` runs after
    backward, before the update, with the gradients in place; returning False skips the update.
    """
    x, y, sample_weight = batch
    policy = precision.of(model)
    with policy.autocast(x.device):
        y_pred, mask = distributed.train_forward(model, x, y)
    y_pred = precision.full(y_pred)
    weight = combine_weights(sample_weight, mask)
    total = compute_loss(model, y, y_pred, weight, loss)
    optimizer = model.optimizer if optimizer is None else optimizer
    optimizer.zero_grad()
    policy.backward_step(total, optimizer, before_update)
    return model.compute_metrics(total, y, y_pred.detach(), weight, len(x))


@torch.no_grad()
def test_step(model, batch) -> dict[str, float]:
    """The loss and metrics of ``batch``, added to the running logs."""
    x, y, sample_weight = batch
    with precision.of(model).autocast(x.device):
        y_pred, mask = model.call_with_mask(x)
    y_pred = precision.full(y_pred)
    weight = combine_weights(sample_weight, mask)
    total = model.compute_loss(y, y_pred, weight)
    return model.compute_metrics(total, y, y_pred, weight, len(x))


@torch.no_grad()
def predict_step(model, batch) -> Tensor:
    """The model's outputs for ``batch[0]``."""
    with precision.of(model).autocast(batch[0].device):
        return precision.full(model(batch[0]))
