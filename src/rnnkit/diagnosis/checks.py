"""The doctor: the lecture's checklist for "NaN loss or validation loss", one check per item.

``diagnose(model, x, y)`` looks at the data (non-finite values, all-zero rows, unnormalized
features, normalization that saw the validation data, a tiny last batch), at the model (output
activation against the loss and labels, dropout, learning rate) and, with a loss, at a few probe
training steps (gradient norms, gradient through time, regularization against the data loss).
The probe takes fit's own train step (``training.steps.train_step``, the model's precision
included) with a copy of the optimizer; the model's weights, gradients, recurrent states, running
metrics and the torch RNG are restored afterwards, and the model's own optimizer is never touched.

Dimension legend: B batch (N samples), T time, F features, C classes.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from .. import activations
from ..data.timeseries import Normalizer, WindowDataset
from ..errors import ConfigError, RnnkitError
from ..layers.core import Dense, Dropout
from ..layers.recurrent import GRU, LSTM, RNN
from ..training import losses as _losses
from ..training import optimizers as _optimizers
from ..training.data import is_array_like, to_tensor, unpack
from ..training.steps import train_step
from .inside import ensure_built, gradient_through_time, recurrent_layers
from .report import Finding, Report

MAX_POSITIONS = 5  # positions listed per finding
MAX_CELLS = 20  # non-finite cells listed (all are counted)
UNNORMALIZED_MEAN, UNNORMALIZED_STD = 3.0, 5.0  # |mean| or std beyond these: not standardized
EXPLODING_NORM = 1e3  # a global gradient norm above this in the first steps is exploding
VANISHING_RATIO = 1e-3  # ‖∂L/∂h_0‖ / ‖∂L/∂h_T‖ below this: the first steps get no signal
LONG_SEQUENCE = 20  # vanishing through time is checked from this many steps on
# Learning rates that train in practice, per optimizer; 10x beyond either end is "far off".
LR_RANGE = {"RMSprop": (1e-5, 1e-2), "Adam": (1e-5, 1e-2), "Adagrad": (1e-4, 1.0),
            "SGD": (1e-4, 1.0)}
CLASSIFICATION = ("binary_crossentropy", "categorical_crossentropy",
                  "sparse_categorical_crossentropy")


@dataclass
class _Data:
    """The data the doctor looks at: numpy views for the checks, batches for the probe."""

    x: np.ndarray
    y: np.ndarray | None
    n_train: int  # samples before the validation part (all of x without validation_split)
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None
    batches: list = field(default_factory=list)  # [(x, y) tensors] for the probe
    window: WindowDataset | None = None


def diagnose(model: nn.Module, x, y=None, *, batch_size: int = 32, validation_split: float = 0.0,
             validation_data=None, probe_steps: int = 20, source: dict | None = None,
             normalizer: Normalizer | None = None, loss=None, optimizer=None) -> Report:
    """Run every check on ``model`` and the data it would be fit on; return the Report.

    x, y: arrays, tensors or lists as for ``fit`` (what the model sees, i.e. after any
    normalization); or x a tuple (x, y), an iterable of (x, y) batches or a ``WindowDataset``
    (then y is None).
    batch_size, validation_split, validation_data: as ``fit`` would get them.
    probe_steps: training steps taken on a copy of the optimizer to watch the gradient norms
    (0: no probe). source: maps positions back to a file, ``{"file": path, "columns": [names],
    "row_offset": file line of row 0 (2 for a CSV with one header line)}`` or ``"lines"``: the
    file line of every row (``Table.lines``); for windows ``"window_rows"`` (N, T) and
    ``"target_rows"`` (N,) give the table row of every step and target (filled in for a
    WindowDataset). normalizer: the fitted Normalizer the data went through (a WindowDataset's
    own is used when not given). loss, optimizer: used when the model is not compiled.
    """
    _check_arguments(batch_size, validation_split, probe_steps)
    data = _gather(x, y, validation_split, validation_data, probe_steps, batch_size)
    source = _complete_source(source, data.window)
    normalizer = normalizer if normalizer is not None or data.window is None \
        else data.window.normalizer
    loss_fn = _losses.get(loss) if loss is not None else getattr(model, "loss", None)
    opt = _optimizers.get(optimizer) if optimizer is not None else getattr(model, "optimizer", None)
    report = Report()

    def run(name: str, findings: list[Finding]) -> None:
        report.findings.extend(findings)
        if not findings:
            report.passed.append(name)

    finite = check_non_finite(data, source)
    run("non-finite-values", finite)
    run("zero-rows", check_zero_rows(data, source))
    run("unnormalized-features", check_unnormalized(data))
    run("constant-columns", check_constant_columns(data, source))
    run("normalization-leak", check_leak(data, normalizer))
    run("last-batch", check_last_batch(data, batch_size))
    run("dropout", check_dropout(model))
    if loss_fn is None:
        report.findings.append(Finding(
            "not-compiled", "info", "the model has no loss, so the activation/loss, gradient and "
            "regularization checks did not run", "compile the model (model.compile(optimizer, "
            "loss)) or pass loss= (and optimizer=) to the doctor"))
    else:
        run("activation-loss", check_activation_loss(model, loss_fn, data))
    if opt is not None:
        run("learning-rate", check_learning_rate(opt))
    if loss_fn is not None:
        report.findings.extend(_probe_findings(model, loss_fn, opt, data, probe_steps,
                                               bool(finite), run))
    order = {"error": 0, "warning": 1, "info": 2}
    report.findings.sort(key=lambda f: order[f.severity])
    return report



def _check_arguments(batch_size, validation_split, probe_steps) -> None:
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) \
            or batch_size <= 0:
        raise ConfigError(f"doctor: batch_size must be a positive integer, got {batch_size!r}")
    if not 0.0 <= validation_split < 1.0:
        raise ConfigError(f"doctor: validation_split must be in [0, 1), got {validation_split}")
    if not isinstance(probe_steps, (int, np.integer)) or probe_steps < 0:
        raise ConfigError(f"doctor: probe_steps must be an integer >= 0, got {probe_steps!r}")


# -- gathering the data ---------------------------------------------------------------------------

def _gather(x, y, validation_split, validation_data, probe_steps, batch_size) -> _Data:
    if y is None and isinstance(x, tuple) and 2 <= len(x) <= 3 and is_array_like(x[0]):
        x, y = x[0], x[1]  # one batch (x, y[, sample_weight]), as validation_data is given
    if is_array_like(x):
        xt = to_tensor(x, "x")
        yt = None if y is None else to_tensor(y, "y")
        if yt is not None and len(yt) != len(xt):
            raise ConfigError(f"doctor: x and y must have the same number of samples: x has "
                              f"{len(xt)}, y has {len(yt)}")
        n_train = int(np.floor(len(xt) * (1.0 - validation_split))) if validation_split \
            else len(xt)
        data = _Data(xt.numpy(), None if yt is None else yt.numpy(), n_train)
        starts = range(0, n_train, batch_size)
        data.batches = [(xt[s:min(s + batch_size, n_train)],
                         None if yt is None else yt[s:min(s + batch_size, n_train)])
                        for s in itertools.islice(starts, max(probe_steps, 1))]
    else:
        if y is not None:
            raise ConfigError("doctor: y must be None when x is an iterable of batches")
        data = _from_batches(x, max(probe_steps, 1))
    if validation_data is not None:
        data.val_x, data.val_y = _validation_arrays(validation_data)
    return data


def _from_batches(x, count: int) -> _Data:
    if not isinstance(x, Iterable):
        raise ConfigError(f"doctor: x must be an array, tensor, list or an iterable of batches, "
                          f"got {type(x).__name__}")
    window = x if isinstance(x, WindowDataset) else None
    stream = x.batches(shuffle=False) if window is not None else iter(x)
    batches = [unpack(b)[:2] for b in itertools.islice(stream, count)]
    if not batches:
        raise ConfigError("doctor: x yielded no batches (empty data)")
    xs = [b[0] for b in batches]
    same = all(t.shape[1:] == xs[0].shape[1:] for t in xs)
    xcat = torch.cat(xs) if same else xs[0]
    ys = [b[1] for b in batches]
    ycat = None if ys[0] is None else (torch.cat(ys) if same else ys[0])
    return _Data(xcat.numpy(), None if ycat is None else ycat.numpy(), len(xcat),
                 batches=batches, window=window)


def _validation_arrays(validation_data):
    if isinstance(validation_data, (tuple, list)) and 2 <= len(validation_data) <= 3 \
            and is_array_like(validation_data[0]):
        return (to_tensor(validation_data[0], "validation x").numpy(),
                to_tensor(validation_data[1], "validation y").numpy())
    if isinstance(validation_data, WindowDataset):
        return None, None  # its rows are checked through the window's series
    batches = [unpack(b)[:2] for b in itertools.islice(iter(validation_data), 4)]
    if not batches:
        return None, None
    return batches[0][0].numpy(), None if batches[0][1] is None else batches[0][1].numpy()


def _complete_source(source: dict | None, window: WindowDataset | None) -> dict | None:
    if source is None or window is None:
        return source
    source = dict(source)
    source.setdefault("window_rows", window.anchors[:, None] + window.offsets)
    source.setdefault("target_rows", window.target_rows(window.anchors))
    return source


# -- positions ------------------------------------------------------------------------------------

def _axes_names(ndim: int) -> tuple[str, ...]:
    return {1: ("row",), 2: ("row", "feature"), 3: ("row", "step", "feature")}.get(
        ndim, tuple(f"axis{i}" for i in range(ndim)))


def _position(index, ndim: int, array: str, source: dict | None) -> dict:
    """A position in an array as a dict, with the file, line and column when ``source`` says."""
    pos = dict(zip(_axes_names(ndim), (int(i) for i in index)))
    if source is None:
        return pos
    table_row, feature = _table_row(pos, ndim, array, source)
    if table_row is None:
        return pos
    pos["file"] = str(source.get("file", "?"))
    lines = source.get("lines")
    pos["line"] = int(lines[table_row]) if lines is not None \
        else table_row + int(source.get("row_offset", 0))
    columns = source.get("columns")
    if columns is not None and feature is not None and feature < len(columns):
        pos["column"] = columns[feature]
    elif feature is None and source.get("target_column") is not None:
        pos["column"] = source["target_column"]
    return pos


def _table_row(pos: dict, ndim: int, array: str, source: dict):
    """(table row, feature) of an array position, or (None, None) when it cannot be mapped."""
    if array == "data":  # a WindowDataset's series: rows are table rows
        return pos["row"], pos.get("feature")
    if array == "y":
        rows = source.get("target_rows")
        return (None, None) if rows is None else (int(np.ravel(rows[pos["row"]])[0]), None)
    if ndim == 3 and source.get("window_rows") is not None:
        return int(source["window_rows"][pos["row"], pos["step"]]), pos["feature"]
    if ndim == 2:
        return pos["row"], pos["feature"]
    return None, None


def _positions(mask: np.ndarray, array: str, source: dict | None,
               limit: int = MAX_POSITIONS) -> list[dict]:
    """Up to ``limit`` distinct positions where ``mask`` is set (distinct file cells), each with
    the cell's text when the file was read with its bad cells kept."""
    cells = {(c.line, c.column): c for c in (source or {}).get("bad_cells") or []}
    out, seen = [], set()
    for index in np.argwhere(mask):
        pos = _position(index, mask.ndim, array, source)
        key = (pos.get("line"), pos.get("column")) if "line" in pos else tuple(index)
        if key not in seen:
            seen.add(key)
            if key in cells:
                pos["cell"] = cells[key].text
            out.append(pos)
        if len(out) == limit:
            break
    return out


def _describe(pos: dict) -> str:
    skip = ("file", "line", "column", "cell")
    inside = ", ".join(f"{k} {v}" for k, v in pos.items() if k not in skip)
    if "line" not in pos:
        return inside
    column = f", column {pos['column']!r}" if "column" in pos else ""
    cell = "" if "cell" not in pos else \
        (" missing" if pos["cell"] is None else f" {pos['cell']!r}")
    return f"{inside} ({pos['file']}: line {pos['line']}{column}{cell})"


# -- data checks ----------------------------------------------------------------------------------

def _named_arrays(data: _Data) -> list[tuple[str, np.ndarray]]:
    arrays = [("data", np.asarray(data.window.data))] if data.window is not None else []
    arrays += [("x", data.x), ("y", data.y), ("validation x", data.val_x),
               ("validation y", data.val_y)]
    return [(n, a) for n, a in arrays if a is not None and a.size and a.dtype.kind == "f"]


def check_non_finite(data: _Data, source: dict | None) -> list[Finding]:
    """NaN or inf anywhere in the inputs or targets, with the first positions."""
    findings = []
    for name, a in _named_arrays(data):
        if name != "data" and data.window is not None:
            continue  # the windows are cut from the series; report the series' rows once
        bad = ~np.isfinite(a)
        count = int(bad.sum())
        if not count:
            continue
        positions = _positions(bad, "y" if name.endswith("y") else name.split()[-1], source,
                               MAX_CELLS)
        kinds = _kinds(a, bad, name, source)
        what = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        findings.append(Finding(
            "non-finite-values", "error",
            f"{name} holds {count} non-finite values ({what}); first at "
            + "; ".join(_describe(p) for p in positions),
            "drop or impute these rows before training (a single NaN makes the loss and every "
            "weight NaN); rnnkit.data.read_table refuses such cells with their line and column",
            {"array": name, "count": count, "kinds": kinds, "positions": positions}))
    return findings


def _kinds(a: np.ndarray, bad: np.ndarray, name: str, source: dict | None) -> dict[str, int]:
    """How many of the bad values are NaN and inf; for a file's series, what its cells held
    (empty, text, 'nan', 'inf', missing)."""
    cells = (source or {}).get("bad_cells")
    if name == "data" and cells:
        counts: dict[str, int] = {}
        for cell in cells:
            counts[cell.kind] = counts.get(cell.kind, 0) + 1
        return counts
    n_nan = int(np.isnan(a).sum())
    return {"NaN": n_nan, "inf": int(bad.sum()) - n_nan}


def check_zero_rows(data: _Data, source: dict | None) -> list[Finding]:
    """Time steps (or samples) whose features are all zero, other than leading/trailing padding."""
    findings = []
    for name, a in _named_arrays(data):
        if name.endswith("y") and (a.ndim < 2 or a.shape[-1] < 2):
            continue  # a single target of 0 is an ordinary value
        if a.ndim < 2 or a.shape[-1] < 2:
            continue
        zero = np.all(a == 0, axis=-1)  # (N,) or (N, T)
        if zero.ndim == 2:
            zero = zero & ~_padding(zero)
        count = int(zero.sum())
        if not count:
            continue
        expanded = zero[..., None] & np.ones(a.shape[-1], dtype=bool)[None]
        positions = _positions(expanded[..., :1], name.split()[-1], source)
        for p in positions:
            p.pop("feature", None)
            p.pop("column", None)
        what = "targets (one-hot rows of no class)" if name.endswith("y") else "inputs"
        findings.append(Finding(
            "zero-rows", "warning",
            f"{name}: {count} {'steps' if zero.ndim == 2 else 'rows'} have all {a.shape[-1]} "
            f"{what} exactly 0; first at " + "; ".join(_describe(p) for p in positions),
            "check for sensor dropouts or missing values written as 0; impute or drop them, or "
            "pad only at the start/end of sequences and use masking",
            {"array": name, "count": count, "positions": positions}))
    return findings


def _padding(zero: np.ndarray) -> np.ndarray:
    """(N, T) zero steps -> the leading and trailing runs of zeros of rows that hold data."""
    lead = np.cumprod(zero, axis=1).astype(bool)
    trail = np.cumprod(zero[:, ::-1], axis=1)[:, ::-1].astype(bool)
    has_data = ~zero.all(axis=1, keepdims=True)
    return (lead | trail) & has_data


def _feature_stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof 0) of each feature over its finite values (0, 0 with none)."""
    flat = a.reshape(-1, a.shape[-1]).astype(np.float64)
    finite = np.isfinite(flat)
    count = np.maximum(finite.sum(axis=0), 1)
    mean = np.where(finite, flat, 0.0).sum(axis=0) / count
    return mean, np.sqrt((np.where(finite, flat - mean, 0.0) ** 2).sum(axis=0) / count)


def check_constant_columns(data: _Data, source: dict | None) -> list[Finding]:
    """Input features with a single value (NaN aside) over the training data: they carry
    nothing, and standardizing one divides by zero (``Normalizer.fit`` refuses it)."""
    if data.window is not None:
        series = np.asarray(data.window.data)
        lo, hi = _window_rows(data.window)
        a, where, severity = series[lo:hi], f"rows [{lo}, {hi})", "error"
    else:
        a, where, severity = data.x[:data.n_train], "the training samples", "warning"
    if a.dtype.kind != "f" or a.ndim < 2 or len(a) < 2:
        return []
    flat = a.reshape(-1, a.shape[-1]).astype(np.float64)
    finite = np.isfinite(flat)
    low = np.where(finite, flat, np.inf).min(axis=0)
    high = np.where(finite, flat, -np.inf).max(axis=0)
    constant = [j for j in range(flat.shape[1]) if not low[j] < high[j]]
    if not constant:
        return []
    columns = (source or {}).get("columns")
    names = [repr(columns[j]) if columns is not None and j < len(columns) else f"feature {j}"
             for j in constant]
    values = ["no finite value" if not np.isfinite(low[j]) else f"always {low[j]:.6g}"
              for j in constant]
    listed = "; ".join(f"{n}: {v}" for n, v in zip(names, values))
    return [Finding(
        "constant-columns", severity,
        f"{len(constant)} of {flat.shape[1]} input features are constant over {where} ({listed}): "
        "they carry no information, and standardizing them divides by a spread of 0",
        "drop them from the features (rnnkit train --features without them), or check why the "
        "sensor never changes", {"features": constant, "columns": names})]


def _window_rows(window: WindowDataset) -> tuple[int, int]:
    """The table rows [lo, hi) the windows read: inputs and targets."""
    lo = int(window.anchors[0] + window.offsets[0])
    hi = int(window.target_rows(window.anchors[-1:]).max()) + 1
    return lo, hi


def check_unnormalized(data: _Data) -> list[Finding]:
    """Float input features whose mean or spread is far from standardized (0, 1)."""
    x = data.x[:data.n_train]
    if x.dtype.kind != "f" or x.ndim < 2 or not x.size:
        return []
    mean, std = _feature_stats(x)
    off = (np.abs(mean) > UNNORMALIZED_MEAN) | (std > UNNORMALIZED_STD)
    if not off.any():
        return []
    worst = np.argsort(-np.maximum(np.abs(mean), std))[:MAX_POSITIONS]
    worst = [int(j) for j in worst if off[j]]
    listed = ", ".join(f"feature {j}: mean {mean[j]:.4g}, std {std[j]:.4g}" for j in worst)
    return [Finding(
        "unnormalized-features", "warning",
        f"{int(off.sum())} of {x.shape[-1]} input features are far from standardized ({listed})",
        "standardize each feature with the training rows' statistics: "
        "rnnkit.data.Normalizer().fit(data, 0, train_end).transform(data), as the lecture "
        "does with mean and std of the first 200,000 rows",
        {"array": "x", "features": worst})]


def check_leak(data: _Data, normalizer: Normalizer | None) -> list[Finding]:
    """Normalization statistics that came from more than the training rows."""
    if data.window is not None and normalizer is not None:
        return _window_leak(data.window, normalizer)
    val = data.x[data.n_train:] if data.n_train < len(data.x) else data.val_x
    train = data.x[:data.n_train]
    if val is None or not len(val) or train.dtype.kind != "f" or train.ndim < 2:
        return []
    both = np.concatenate([train, val])
    full_mean, full_std = _feature_stats(both)
    train_mean, train_std = _feature_stats(train)
    full_standard = np.allclose(full_mean, 0, atol=1e-3) and np.allclose(full_std, 1, atol=1e-3)
    train_standard = np.allclose(train_mean, 0, atol=0.05) and np.allclose(train_std, 1, atol=0.05)
    if not full_standard or train_standard:
        return []
    return [Finding(
        "normalization-leak", "warning",
        "training and validation data together are exactly standardized (mean 0, std 1) but the "
        f"training part alone is not (means up to {np.abs(train_mean).max():.3g}, stds "
        f"{train_std.min():.3g}..{train_std.max():.3g}): the statistics included the validation "
        "data", "fit the normalization on the training rows only, then apply it to both parts: "
        "Normalizer().fit(data, 0, train_end)", {"array": "x"})]


def _window_leak(window: WindowDataset, normalizer: Normalizer) -> list[Finding]:
    data = np.asarray(window.data)
    lo, hi = _window_rows(window)
    if normalizer.mean is None:
        return []
    def matches(a: int, b: int) -> bool:
        mean, std = _feature_stats(data[a:b])
        return bool(np.allclose(mean, normalizer.mean, rtol=1e-4, atol=1e-6 * std.max())
                    and np.allclose(std, normalizer.std, rtol=1e-4))
    if matches(lo, hi):
        return []
    wider = [(a, b) for a, b in ((0, len(data)), (lo, len(data)), (0, hi))
             if (a, b) != (lo, hi) and matches(a, b)]
    if not wider:
        return []
    a, b = wider[0]
    return [Finding(
        "normalization-leak", "warning",
        f"the Normalizer's statistics are those of rows [{a}, {b}), but training uses rows "
        f"[{lo}, {hi}): it saw the validation (or test) rows",
        f"fit it on the training rows only: Normalizer().fit(data, {lo}, {hi})",
        {"normalizer_rows": [a, b], "training_rows": [lo, hi]})]


def check_last_batch(data: _Data, batch_size: int) -> list[Finding]:
    """A last batch much smaller than the others (its gradient step is noisy)."""
    n = data.window.anchors.size if data.window is not None else data.n_train
    size = data.window.batch_size if data.window is not None else batch_size
    rest = n % size
    if n <= size or rest == 0 or rest >= size / 4:
        return []
    sizes = range(max(size // 2, 1), 2 * size + 1)
    fits = [b for b in sizes if n % b == 0] or [b for b in sizes if n % b >= b / 2]
    near = min(fits, key=lambda b: abs(b - size)) if fits else None
    tip = f"; e.g. batch_size={near}" if near and near != size else ""
    return [Finding(
        "last-batch", "warning",
        f"the last batch has {rest} samples against {size} in the others ({n} training samples): "
        "its update is noisy and its statistics (BatchNormalization) unreliable",
        f"choose a batch size that divides the data more evenly or drop the last {rest} "
        f"samples{tip}", {"samples": n, "batch_size": size, "last_batch": rest})]


# -- model checks ---------------------------------------------------------------------------------

def _output_head(model: nn.Module) -> tuple[str, int | None, str] | None:
    """(activation name, units, layer name) of the model's output, or None if unknown."""
    layers = list(getattr(model, "layers", [])) or [m for m in model.modules()
                                                     if isinstance(m, (Dense, RNN))]
    if not layers:
        return None
    last = layers[-1]
    if isinstance(last, Dense):
        return activations.name_of(last.activation), last.units, last.name
    if isinstance(last, RNN) and last.output_units is not None:
        return (activations.name_of(activations.get(last.output_activation)), last.output_units,
                last.name)
    return None


def check_activation_loss(model: nn.Module, loss_fn: _losses.Loss, data: _Data) -> list[Finding]:
    """The output activation against the loss and the labels (the lecture's mismatches)."""
    head = _output_head(model)
    if head is None:
        return []
    act, units, layer = head
    where = {"layer": layer, "activation": act, "units": units, "loss": loss_fn.name}
    logits = bool(loss_fn.kwargs.get("from_logits", False))
    y = data.y
    out = []

    def add(severity, message, suggestion):
        out.append(Finding("activation-loss", severity, message, suggestion, where))

    name = loss_fn.name
    if act == "softmax" and units == 1:
        add("error", f"{layer}: softmax over a single unit always outputs 1, so its gradient is 0",
            "for two classes use Dense(1, activation='sigmoid') with binary_crossentropy, or "
            "Dense(2, activation='softmax') with sparse_categorical_crossentropy")
    if name in ("categorical_crossentropy", "sparse_categorical_crossentropy") and act == "sigmoid":
        add("error", f"{layer}: sigmoid outputs with {name}: the {units} outputs are independent "
            "and do not sum to 1, so the classes do not compete",
            "use activation='softmax' for one class per sample (or binary_crossentropy for "
            "independent labels)")
    if name in CLASSIFICATION and not logits and act in ("linear", "relu"):
        add("warning", f"{layer}: {act} outputs are not probabilities but {name} expects them; "
            "they are clipped to [1e-7, 1 - 1e-7], where the gradient is 0",
            f"add activation='{'sigmoid' if name == 'binary_crossentropy' else 'softmax'}' or "
            f"use {name} with from_logits=True")
    if logits and act in ("sigmoid", "softmax"):
        add("warning", f"{layer}: {act} outputs with from_logits=True apply {act} twice",
            "drop the activation or use from_logits=False")
    if y is not None and y.size and np.isfinite(y).all():
        out += _label_findings(name, act, units, y, layer, where)
    return out


def _label_findings(name, act, units, y, layer, where) -> list[Finding]:
    out = []

    def add(severity, message, suggestion):
        out.append(Finding("activation-loss", severity, message, suggestion, where))

    if name == "binary_crossentropy" and (y.min() < 0 or y.max() > 1):
        add("error", f"binary_crossentropy needs labels in {{0, 1}}, the targets range over "
            f"[{y.min():.4g}, {y.max():.4g}]",
            "map the labels to 0/1, or use sparse_categorical_crossentropy for class ids and "
            "mse for real values")
    if name == "sparse_categorical_crossentropy" and units:
        ids = np.unique(y.astype(np.int64))
        if ids.max() >= units or ids.min() < 0:
            add("error", f"class ids up to {ids.max()} do not fit {units} output units",
                f"use Dense({int(ids.max()) + 1}, activation='softmax')")
        elif act == "softmax" and ids.max() + 1 < units:
            add("warning", f"{layer}: softmax over {units} classes, but the labels use only "
                f"{len(ids)} (ids {ids.min()}..{ids.max()})",
                f"use Dense({int(ids.max()) + 1}, activation='softmax'), or check the labels")
    if name == "categorical_crossentropy" and y.ndim >= 2 and y.shape[-1] == units:
        used = int((y.reshape(-1, units) != 0).any(axis=0).sum())
        if act == "softmax" and used < units:
            add("warning", f"{layer}: softmax over {units} classes, but only {used} columns of "
                "the one-hot targets are ever set", f"use {used} output units or check the "
                "one-hot encoding")
    ranges = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "relu": (0.0, math.inf),
              "softmax": (0.0, 1.0)}
    if name not in CLASSIFICATION and act in ranges:
        lo, hi = ranges[act]
        if y.min() < lo or y.max() > hi:
            add("error", f"{layer}: {act} outputs lie in [{lo}, {hi}], the targets range over "
                f"[{y.min():.4g}, {y.max():.4g}]: they cannot be reached",
                "use a linear output (Dense(units) without activation) for regression, or "
                "scale the targets into the activation's range")
    return out


def check_dropout(model: nn.Module) -> list[Finding]:
    """Dropout rates of 0.5 or more (on inputs, recurrent connections or between layers)."""
    out = []
    for m in model.modules():
        rates = {}
        if isinstance(m, Dropout):
            rates["rate"] = m.rate
        elif isinstance(m, RNN):
            rates = {"dropout": m.dropout, "recurrent_dropout": m.recurrent_dropout}
        for arg, rate in rates.items():
            if rate >= 0.5:
                out.append(Finding(
                    "dropout", "warning", f"{m.name}: {arg}={rate} drops half or more of the "
                    "signal at every step; training is slow and the loss noisy",
                    f"start with {arg}=0.1..0.3 (the lecture uses dropout=0.2, "
                    "recurrent_dropout=0.2) and raise it only while validation loss improves",
                    {"layer": m.name, arg: rate}))
    return out


def check_learning_rate(opt: _optimizers.Optimizer) -> list[Finding]:
    """A learning rate more than 10x outside what trains in practice for the optimizer."""
    kind = type(opt).__name__
    if kind not in LR_RANGE:
        return []
    lo, hi = LR_RANGE[kind]
    lr = opt.learning_rate
    if lo / 10 <= lr <= hi * 10:
        return []
    default = type(opt)().learning_rate
    return [Finding(
        "learning-rate", "warning",
        f"learning rate {lr:g} is far {'above' if lr > hi else 'below'} the usual range "
        f"[{lo:g}, {hi:g}] for {kind}",
        f"start from {kind}'s default learning_rate={default:g}",
        {"optimizer": kind, "learning_rate": lr})]


# -- probe steps ----------------------------------------------------------------------------------

@dataclass
class _Probe:
    norms: list[float] = field(default_factory=list)  # global gradient norm per step
    losses: list[float] = field(default_factory=list)
    data_loss: float = math.nan  # first step, at the model's weights
    reg_loss: float = 0.0
    bad_step: int | None = None  # the first step with a non-finite loss or gradient


def _probe_findings(model, loss_fn, opt, data: _Data, probe_steps: int, has_non_finite: bool,
                    run) -> list[Finding]:
    if has_non_finite:
        return [Finding("gradient-probe", "info", "the probe training steps did not run: the data "
                        "holds non-finite values", "fix the non-finite values, then run the "
                        "doctor again")]
    batches = [b for b in data.batches if b[1] is not None]
    if not batches or probe_steps == 0:
        return []
    extra = []
    if opt is None:
        opt = _optimizers.RMSprop()
        extra.append(Finding("gradient-probe", "info", "no optimizer: the probe used RMSprop "
                             "(learning rate 1e-3)", "compile the model or pass optimizer="))
    _build(model, batches[0][0])  # as fit would: the weights must exist before they are saved
    with _preserved(model):
        try:
            vanishing = check_vanishing(model, loss_fn, batches[0])
            probe = _run_probe(model, loss_fn, opt, batches, probe_steps)
        except RnnkitError as e:
            return extra + [Finding("gradient-probe", "error", f"a probe step failed: {e}",
                                    "fix the model or data so that model.fit runs")]
    run("exploding-gradients", check_exploding(probe, opt))
    run("vanishing-gradients", vanishing)
    run("regularization", check_regularization(probe))
    return extra


def _build(model: nn.Module, x: Tensor) -> None:
    if hasattr(model, "build_from_batch"):
        model.build_from_batch(x)
    ensure_built(model, x)


class _preserved:
    """Restores a model's weights, gradients, recurrent states, running metrics, mode and the
    torch RNG on exit."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        m = self.model
        self.metrics = [copy.deepcopy(k.__dict__) for k in getattr(m, "metrics", [])]
        self.state = copy.deepcopy(m.state_dict())
        self.grads = [None if p.grad is None else p.grad.clone() for p in m.parameters()]
        self.rnn_states = [(layer, layer.states) for layer in recurrent_layers(m)]
        self.training = m.training
        self.rng = torch.get_rng_state()
        return self

    def __exit__(self, *exc):
        m = self.model
        m.load_state_dict(self.state)
        for p, g in zip(m.parameters(), self.grads):
            p.grad = g
        for layer, states in self.rnn_states:
            layer.states = states
        m.train(self.training)
        torch.set_rng_state(self.rng)
        for k, state in zip(getattr(m, "metrics", []), self.metrics):
            k.__dict__.update(state)
        return False


def _run_probe(model, loss_fn, opt_spec, batches, steps: int) -> _Probe:
    """``steps`` of fit's own train step (cycling through ``batches``) with a fresh copy of the
    optimizer, the gradient norm read before each update; a non-finite one ends the probe."""
    opt = copy.copy(opt_spec)
    opt.torch_optimizer, opt.params, opt.iterations = None, [], 0
    opt.build(model.parameters())
    model.train()
    probe = _Probe()

    def look(loss: Tensor) -> bool:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double())
                                                           for g in grads])))
        if not probe.norms:  # the first step, at the model's own weights
            with torch.no_grad():
                probe.reg_loss = float(model.regularization_loss())
            probe.data_loss = loss.item() - probe.reg_loss
        probe.norms.append(norm)
        probe.losses.append(loss.item())
        finite = math.isfinite(norm) and math.isfinite(probe.losses[-1])
        if not finite:
            probe.bad_step = len(probe.norms) - 1
        return finite

    for x, y in itertools.islice(itertools.cycle(batches), steps):
        train_step(model, (x, y, None), optimizer=opt, loss=loss_fn, before_update=look)
        if probe.bad_step is not None:
            break
    return probe


def check_exploding(probe: _Probe, opt) -> list[Finding]:
    """Gradient norms over the first steps: non-finite, very large, or growing fast."""
    if not probe.norms:
        return []
    finite = [n for n in probe.norms if math.isfinite(n)]
    peak = max(finite) if finite else math.inf
    growth = peak / max(probe.norms[0], 1e-30) if finite else math.inf
    if probe.bad_step is None and peak <= EXPLODING_NORM and growth <= 1e3:
        return []
    clip = {k: getattr(opt, k, None) for k in ("clipnorm", "clipvalue", "global_clipnorm")}
    clip = {k: v for k, v in clip.items() if v is not None}
    kind = type(opt).__name__
    tips = [] if clip else ["clip the gradients: optimizer=RMSprop(clipnorm=1.0) (or clipvalue=0.5)"]
    tips.append(f"a smaller learning rate than {opt.learning_rate:g}")
    if kind == "SGD":
        tips.append("RMSprop or Adam, which scale each step by the gradient's running size")
    tips.append("standardized inputs and a tanh (not ReLU) recurrence")
    steps = ", ".join(f"{n:.3g}" for n in probe.norms[:8])
    if probe.bad_step is not None:
        message = (f"the loss or gradient became non-finite at probe step {probe.bad_step + 1}; "
                   f"gradient norms: {steps}")
        severity = "error"
    else:
        more = ", ..." if len(probe.norms) > 8 else ""
        message = (f"gradient norms explode over the first {len(probe.norms)} steps: first "
                   f"{probe.norms[0]:.3g}, largest {peak:.3g} ({steps}{more})")
        severity = "warning" if clip else "error"
    if clip:
        message += f"; clipping is on ({', '.join(f'{k}={v}' for k, v in clip.items())})"
    return [Finding("exploding-gradients", severity, message, "; or ".join(tips),
                    {"norms": [round(n, 6) if math.isfinite(n) else str(n) for n in probe.norms],
                     "optimizer": kind, **clip})]


def check_vanishing(model, loss_fn, batch) -> list[Finding]:
    """‖∂L/∂h_t‖ of the first recurrent layer on one batch: does the first step get a signal?"""
    layers = recurrent_layers(model)
    x, y = batch
    if not layers or x.dim() < 2 or x.shape[1] < LONG_SEQUENCE:
        return []
    layer = layers[0]
    norms = gradient_through_time(model, x, y, loss=loss_fn, layer=layer)
    if layer.go_backwards:
        norms = norms[::-1]
    last = norms[-1]
    if not (np.isfinite(norms).all() and last > 0):
        return []
    ratio = float(norms[0] / last)
    if ratio >= VANISHING_RATIO:
        return []
    reach = int(np.argmax(norms[::-1] < 1e-2 * last))  # steps back until below 1% of the last
    gated = isinstance(layer, (LSTM, GRU))
    tips = ([] if gated else ["use LSTM or GRU, whose gates can carry the gradient"]) + [
        f"a shorter lookback (the gradient falls below 1% within {reach} steps)",
        "subsample the sequence (the lecture's step=6) or add skip connections (lags=(1, s), "
        "DilatedRNN)"]
    return [Finding(
        "vanishing-gradients", "info" if gated else "warning",
        f"{layer.name} ({type(layer).__name__}): ‖∂L/∂h_t‖ at the first of {len(norms)} steps is "
        f"{ratio:.2g} times that at the last; dependencies longer than about {reach} steps get "
        "almost no gradient", "; or ".join(tips),
        {"layer": layer.name, "ratio_first_to_last": float(f"{ratio:.3g}"), "steps": len(norms),
         "reach": reach})]


def check_regularization(probe: _Probe) -> list[Finding]:
    """Weight penalties larger than the data loss at the start: they would drive training."""
    if not (probe.reg_loss > 0 and math.isfinite(probe.data_loss)) \
            or probe.reg_loss <= probe.data_loss:
        return []
    return [Finding(
        "regularization", "warning",
        f"the weight penalties ({probe.reg_loss:.4g}) exceed the data loss ({probe.data_loss:.4g}) "
        f"{probe.reg_loss / max(probe.data_loss, 1e-30):.3g}x at the start: training will mostly "
        "shrink the weights", "lower the regularization factor (the lecture uses l2(0.001)) or "
        "regularize fewer weights", {"regularization_loss": probe.reg_loss,
                                     "data_loss": probe.data_loss})]
