"""``--model auto`` on a panel: a small candidate set, chosen on the validation windows only.

Candidates (documented in docs/cli.md): a lecture-cell forecaster (``segrnn:64``, or ``gru:32``
when the segment does not divide the lookback; it is the run's trained model), NLinear and DLinear
trained on the same windows, and the seasonal naive forecast. Each is scored by its MAE on the
validation windows in every series' own standardized scale (so no series dominates by its
units); the best is kept, or the mean of the best two when that scores lower still. The test
part is never read here: the chosen model is scored on it once, afterwards. With covariates the
linear candidates (which read no covariates) are left out.
"""

from __future__ import annotations

import numpy as np

from ...layers import MeanForecast, SeasonalNaive
from ...models import Model
from .. import specs
from . import panel as pipeline
from . import training

AUTO = "auto"


def lecture_spec(opt) -> str:
    """The lecture-cell candidate that ``auto`` trains as the run's model."""
    return "segrnn:64" if opt.lookback % opt.segment == 0 else "gru:32"


def resolve(spec: str, opt) -> str:
    return lecture_spec(opt) if spec == AUTO else spec


def select(model: Model, cut: pipeline.PanelSplit, opt, seed: int,
           linear: dict[str, Model]) -> tuple[Model, dict]:
    """(the chosen model, metrics.json's ``"auto"``: every candidate's validation MAE, the
    choice and why). ``linear``: NLinear and DLinear, trained (:func:`panel.linear_models`)."""
    sets = pipeline.windows(opt, cut, 128, seed)
    val, layout = sets["val"], sets["val"].layout
    truth = val.targets()  # (N, H, C') scaled
    candidates = {lecture_spec(opt): model,
                  "seasonal_naive": _seasonal(opt, layout, cut)}
    plain = not layout.packed
    if plain:
        candidates.update(linear)
    predictions = {name: training.predictions(m, val) for name, m in candidates.items()}
    scores = {name: _mae(p, truth) for name, p in predictions.items()}
    ranked = sorted(scores, key=scores.get)
    chosen, reason = ranked[0], "the lowest validation MAE"
    if plain and len(ranked) > 1:
        pair = (predictions[ranked[0]] + predictions[ranked[1]]) / 2
        scores[f"mean({ranked[0]}, {ranked[1]})"] = _mae(pair, truth)
        if scores[f"mean({ranked[0]}, {ranked[1]})"] < scores[chosen]:
            chosen = f"mean({ranked[0]}, {ranked[1]})"
            reason = (f"the mean of the two best candidates scored lower on validation than "
                      f"{ranked[0]} alone")
            candidates[chosen] = _mean(candidates[ranked[0]], candidates[ranked[1]], layout)
    info = {"candidates": scores, "chosen": chosen, "metric": "validation MAE (standardized "
            "per series)", "why": f"{chosen}: {reason} ({scores[chosen]:.4f})",
            "left_out": [] if plain else ["nlinear", "dlinear (they read no covariates)"]}
    return candidates[chosen], info


def _mae(pred: np.ndarray, truth: np.ndarray) -> float:
    point = pred[..., pred.shape[-1] // 2] if pred.ndim == 4 else pred
    return float(np.abs(point - truth).mean())


def _seasonal(opt, layout, cut) -> Model:
    covariates = pipeline.layer_covariates(layout, len(cut.panel))
    layer = SeasonalNaive(opt.horizon, min(opt.season, opt.lookback), list(layout.targets),
                          covariates=covariates)
    return _compiled(layer, layout)


def _mean(a: Model, b: Model, layout) -> Model:
    return _compiled(MeanForecast([a.layers[0], b.layers[0]]), layout)


def _compiled(layer, layout) -> Model:
    model = training.compiled_forecaster(layer, "adam")
    model.build((None, layout.steps, layout.width))
    return model


def check(spec: str) -> bool:
    """Whether ``spec`` is ``auto`` (any other spec is parsed by :mod:`rnnkit.tasks.specs`)."""
    if spec == AUTO:
        return True
    specs.parse(spec)
    return False
