"""Training a forecaster: the compiled model, the schedule, and fit that keeps the better of the
trained and the untrained (last-value) weights; NLinear and DLinear with LTSF-Linear's recipe (Adam
5e-3, batch 32, at most 10 epochs with the learning rate halved each epoch, early stopping with
patience 3).

``decay_schedule`` and ``training_callbacks`` are every task's (:mod:`rnnkit.tasks.protocol`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...data import timeseries as ts
from ...layers import DLinear, Layer, NLinear
from ...models import Model, Sequential
from ...training import callbacks as _callbacks
from ...training import losses as _losses
from ...training import optimizers as _optimizers
from ..protocol import training_callbacks


def compiled_forecaster(layer: Layer, optimizer="adam", loss="mse",
                        quantiles: Sequence[float] | None = None) -> Sequential:
    """``Sequential([layer])`` compiled with ``loss`` (the pinball loss with ``quantiles``)."""
    model = Sequential([layer])
    model.compile(optimizer=optimizer, loss=_losses.Pinball(quantiles) if quantiles else loss)
    return model


def fit_forecaster(model: Model, train: ts.WindowDataset, validation_data: ts.WindowDataset,
                   epochs: int, callbacks: Sequence[_callbacks.Callback] = (), verbose: int = 0,
                   seed: int | None = None, **fit_options) -> _callbacks.History:
    """``model.fit`` on the training windows with the validation windows, keeping the trained
    weights only if they beat the untrained model on the validation loss (a forecaster starts
    at the last-value forecast, so a training run that only made it worse is undone; selection
    on validation, never on test). ``history.kept_untrained`` says which was kept.
    ``fit_options`` go to ``fit`` (``checkpoint_dir``, ``resume``, ...): a resumed run starts
    from the same freshly built model, so it compares with the same untrained weights."""
    before = model.evaluate(validation_data, verbose=0)
    untrained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    history = model.fit(train, validation_data=validation_data, epochs=epochs, verbose=verbose,
                        seed=seed, callbacks=list(callbacks), **fit_options)
    history.kept_untrained = bool(epochs) and model.evaluate(validation_data, verbose=0) >= before
    if history.kept_untrained:
        model.load_state_dict(untrained)
    return history


def linear_baseline(kind: str, horizon: int, targets: Sequence[int], train: ts.WindowDataset,
                    val: ts.WindowDataset, seed: int = 0, epochs: int = 10) -> Model:
    """NLinear or DLinear trained on ``train``'s windows with LTSF-Linear's recipe."""
    torch.manual_seed(seed)
    layer = (NLinear if kind == "nlinear" else DLinear)(horizon, targets=list(targets))
    model = compiled_forecaster(layer, _optimizers.Adam(learning_rate=5e-3))
    model.fit(train.rebatched(32), validation_data=val, epochs=epochs, verbose=0, seed=seed,
              callbacks=training_callbacks(5e-3, patience=3, lr_decay=0.5, decay_start=1))
    return model


def predictions(model: Model, ds: ts.WindowDataset) -> np.ndarray:
    """The model's outputs for every window of ``ds`` in anchor order, float64."""
    return model.predict(ds.batches(), verbose=0).astype(np.float64)
