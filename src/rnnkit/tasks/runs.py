"""Whole runs of the four tasks, from a data file to a run directory, as the CLI drives them.

A run directory holds ``config.json`` (the task and its options, written before training),
``model/`` (``Model.save``: weights, architecture, and as ``preprocessing`` the options plus what
reading new data needs: vectorizer vocabularies, normalizer statistics, classes), ``checkpoint/``
(the last training checkpoint: every task, forecast's streamed windows included, resumes exactly
with ``--resume DIR``), ``history.csv``, ``metrics.json`` and PNG plots.
metrics.json always has a ``"model"`` entry; forecasting adds ``"baselines"``, generation
``"samples"``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import plots
from ..data.datasets import imdb
from ..data.text import TextVectorizer
from ..data.timeseries import Normalizer, split_windows
from ..errors import ConfigError, DataFormatError
from ..layers.forecasting import DECODINGS, NORMALIZATIONS, check_quantiles
from ..models import Model, load_model
from ..training import losses
from ..training import optimizers as _optimizers
from ..training.checkpoint import seed_everything
from . import classification, files, forecasting, generation, specs
from . import seq2seq as s2s

TASKS = ("forecast", "classify", "generate", "seq2seq")


@dataclass
class TrainConfig:
    """Every option of ``rnnkit train``; a TOML config uses the same names."""

    task: str = "forecast"
    data: str = ""
    out: str = "run"
    model: str = "gru:32"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "rmsprop"
    learning_rate: float = 1e-3
    seed: int = 0
    threads: int = 0
    quiet: bool = False
    resume: str = ""
    checkpoint_every: int = 0
    patience: int = 0
    lr_decay: float = 1.0
    # forecast
    target: str = ""
    features: list[str] = field(default_factory=list)
    lookback: int = 96
    horizon: int = 1
    delay: int = 0
    step: int = 1
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    season: int = 24
    loss: str = "mse"
    segment: int = 24
    dropout: float = 0.0
    normalization: str = "last"
    decoding: str = "parallel"
    no_channel_embedding: bool = False
    quantiles: list[float] = field(default_factory=list)
    plot_step: int = 1
    # classify
    text: str = "text"
    label: str = "label"
    max_tokens: int = 10000
    maxlen: int = 200
    embed_dim: int = 32
    validation_fraction: float = 0.2
    # generate
    seq_len: int = 64
    sample_length: int = 200
    # seq2seq
    decoder: str = "gru:64"
    beam_width: int = 3

    def check(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task: expected one of {TASKS}, got {self.task!r}")
        if not self.data:
            raise ConfigError("data: give the data file (--data FILE)")
        if self.task == "forecast" and not self.target:
            raise ConfigError("target: forecasting needs the target column (--target COL), a "
                              "comma-separated list, or 'all'")
        specs.parse(self.model)
        for name in ("epochs", "batch_size", "lookback", "horizon", "seq_len", "maxlen",
                     "checkpoint_every"):
            if getattr(self, name) < (0 if name in ("epochs", "checkpoint_every") else 1):
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"validation_fraction: must be in (0, 1), got "
                              f"{self.validation_fraction}")
        if self.patience < 0 or not self.lr_decay > 0:
            raise ConfigError(f"patience, lr_decay: expected patience >= 0 and lr_decay > 0, got "
                              f"{self.patience}, {self.lr_decay}")
        if self.task == "forecast":
            _forecast_check(self)


@dataclass
class Run:
    """A trained (or reloaded) model with what it needs to read new data."""

    config: TrainConfig
    preprocessing: dict
    model: Model
    history: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


# -- shared ---------------------------------------------------------------------------------
def optimizer(cfg: TrainConfig) -> _optimizers.Optimizer:
    """The named optimizer at ``cfg.learning_rate``, gradients clipped to norm 1 per tensor."""
    cls = type(_optimizers.get(cfg.optimizer, "optimizer"))
    return cls(learning_rate=cfg.learning_rate, clipnorm=1.0)


@dataclass
class Prepared:
    """A built, compiled, untrained model and the data ``fit`` gets: ``data`` holds x, y
    (None for a stream of batches) and validation_data; ``source`` maps rows back to the file."""

    preprocessing: dict
    model: Model
    data: dict
    source: dict | None = None


def _split(n: int, fraction: float) -> int:
    """The first index of the held-out tail; both parts non-empty."""
    cut = int(round(n * (1.0 - fraction)))
    if not 0 < cut < n:
        raise ConfigError(f"validation_fraction {fraction} leaves an empty part of {n} samples")
    return cut


# -- forecast -------------------------------------------------------------------------------
def _forecast_steps(cfg: TrainConfig) -> int:
    """T, the steps of a window: every ``step``-th of ``lookback`` rows."""
    return len(range(0, cfg.lookback, cfg.step))


def _forecast_check(cfg: TrainConfig) -> None:
    """The forecast options, before any file is read (each error names its option)."""
    if not cfg.target:
        raise ConfigError("target: forecasting needs the target column (--target COL, a "
                          "comma-separated list, or all)")
    check_quantiles(cfg.quantiles or None, "quantiles (--quantiles)")
    if cfg.normalization not in NORMALIZATIONS:
        raise ConfigError(f"normalization (--normalization): expected one of {NORMALIZATIONS}, "
                          f"got {cfg.normalization!r}")
    if cfg.decoding not in DECODINGS:
        raise ConfigError(f"decoding (--decoding): expected one of {DECODINGS}, got "
                          f"{cfg.decoding!r}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"dropout (--dropout): must be in [0, 1), got {cfg.dropout}")
    if not 1 <= cfg.plot_step <= cfg.horizon:
        raise ConfigError(f"plot_step (--plot-step): the horizon step to plot must be in "
                          f"[1, {cfg.horizon}], got {cfg.plot_step}")
    if specs.cuts_segments(cfg.model):
        steps = _forecast_steps(cfg)
        if cfg.segment < 1 or steps % cfg.segment:
            raise ConfigError(f"segment (--segment): {cfg.model} cuts the window of {steps} steps "
                              f"into whole segments, and {cfg.segment} does not divide {steps}; "
                              f"choose a --lookback that is a multiple of the segment or another "
                              f"--segment")


def _forecast_build(cfg: TrainConfig, prep: dict) -> Model:
    columns = prep["columns"]
    layer = specs.forecaster(
        cfg.model, cfg.horizon, [columns.index(t) for t in prep["targets"]],
        segment=cfg.segment, dropout=cfg.dropout, normalization=cfg.normalization,
        decoding=cfg.decoding, channel_embedding=not cfg.no_channel_embedding,
        quantiles=cfg.quantiles or None)
    model = forecasting.compiled_forecaster(layer, optimizer(cfg), cfg.loss, cfg.quantiles or None)
    model.build((None, _forecast_steps(cfg), len(columns)))
    return model


def _forecast_series(cfg: TrainConfig, path: str, prep: dict | None = None,
                     bad_cells: str = "raise"):
    """The series, its (train, validation, test) row borders and the target names."""
    names = prep["targets"] if prep else forecasting.target_names(cfg.target, path, cfg.features)
    series = forecasting.load_series(path, names, prep["columns"] if prep else cfg.features,
                                     bad_cells)
    return series, forecasting.split_rows(len(series.values), cfg.split), names


def _forecast_windows(cfg: TrainConfig, series, normalizer: Normalizer, borders):
    """(train, validation, test) windows of the protocol; only the training ones shuffled."""
    return split_windows(series.values, borders, cfg.lookback, cfg.horizon, series.targets,
                         cfg.delay, cfg.step, cfg.batch_size, cfg.seed, normalizer)


def _forecast_prepare(cfg: TrainConfig, for_doctor: bool = False) -> Prepared:
    series, borders, names = _forecast_series(cfg, cfg.data,
                                              bad_cells="keep" if for_doctor else "raise")
    normalizer = _tolerant_normalizer(series.values[:borders[0]]) if for_doctor \
        else Normalizer().fit(series.values, 0, borders[0])
    prep = {"columns": series.columns, "targets": names, "normalizer": normalizer.to_config()}
    train, val, _ = _forecast_windows(cfg, series, normalizer, borders)
    source = {"file": cfg.data, "columns": series.columns, "lines": series.lines,
              "bad_cells": series.bad_cells}
    return Prepared(prep, _forecast_build(cfg, prep),
                    {"x": train, "y": None, "validation_data": val}, source)


def _tolerant_normalizer(rows: np.ndarray) -> Normalizer:
    """Statistics of the finite values of training rows (N, F), a constant or empty column
    scaled by 1: the doctor sees the windows of a broken file, and reports what is broken."""
    finite = np.isfinite(rows)
    count = np.maximum(finite.sum(axis=0), 1)
    mean = np.where(finite, rows, 0.0).sum(axis=0) / count
    std = np.sqrt((np.where(finite, rows - mean, 0.0) ** 2).sum(axis=0) / count)
    return Normalizer(mean, np.where(std > 0, std, 1.0))


def _forecast_evaluate(run: Run, path: str, out_dir: Path | None) -> dict:
    cfg = run.config
    series, borders, names = _forecast_series(cfg, path, run.preprocessing)
    normalizer = Normalizer.from_config(run.preprocessing["normalizer"])
    train, val, test = _forecast_windows(cfg, series, normalizer, borders)
    truth = test.targets()  # (N, H, C') standardized
    out = forecasting.predictions(run.model, test)  # (N, H, C'[, Q])
    quantiles = cfg.quantiles or None
    point = out[..., forecasting.point_index(quantiles)] if quantiles else out
    baselines = forecasting.baseline_forecasts(train, val, test, cfg.season, cfg.seed)
    std, mean = normalizer.std[series.targets], normalizer.mean[series.targets]
    metrics = forecasting.scores(point, baselines, truth, std, names)
    if quantiles:
        metrics["quantiles"] = forecasting.quantile_scores(out, truth, quantiles)
    if out_dir is not None:
        k = cfg.plot_step - 1

        def units(values: np.ndarray) -> np.ndarray:  # (N, C') at step k
            return values * std + mean

        interval = (units(out[:, k, :, 0]), units(out[:, k, :, -1])) if quantiles else None
        plots.forecast(names, units(truth[:, k]), {cfg.model: units(point[:, k])},
                       out_dir / "forecast.png", cfg.delay + cfg.plot_step, cfg.horizon,
                       interval, None if not quantiles else (quantiles[0], quantiles[-1]))
    return metrics


def _forecast_predict(run: Run, path: str) -> tuple[list[str], list[list]]:
    """The next ``horizon`` values of each target after the file's last row, in its units
    (with quantiles, one column per level after the point forecast)."""
    cfg, prep = run.config, run.preprocessing
    series = forecasting.load_series(path, prep["targets"], prep["columns"])
    normalizer = Normalizer.from_config(prep["normalizer"])
    if len(series.values) < cfg.lookback:
        raise ConfigError(f"predict: {path} has {len(series.values)} rows, the model reads "
                          f"lookback={cfg.lookback}")
    window = normalizer.transform(series.values[-cfg.lookback:][::cfg.step])
    out = run.model.predict(window[None].astype(np.float32), verbose=0)[0].astype(np.float64)
    std, mean = normalizer.std[series.targets], normalizer.mean[series.targets]
    quantiles = cfg.quantiles or []
    if quantiles:  # (H, C', Q): the point forecast first, then every level
        point = out[..., forecasting.point_index(quantiles)]
        columns = [point * std + mean] + [out[..., i] * std + mean for i in range(len(quantiles))]
    else:
        columns = [out * std + mean]  # (H, C')
    header = ["step", *prep["targets"],
              *[f"{t}_q{q:g}" for q in quantiles for t in prep["targets"]]]
    rows = [[cfg.delay + i + 1, *[float(v) for c in columns for v in c[i]]]
            for i in range(cfg.horizon)]
    return header, rows


# -- classify -------------------------------------------------------------------------------
def _classify_texts(cfg: TrainConfig, path: str, split: str = "train"):
    """(texts, labels as strings, file lines or None) from a CSV, or from the ``split`` of an
    aclImdb folder or tarball (labels "neg", "pos")."""
    source = Path(path)
    if _imdb_layout(source):
        train, test = imdb.load_raw_text(source)
        texts, labels = train if split == "train" else test
        return texts, [("neg", "pos")[i] for i in labels], None
    return files.labeled_texts(source, cfg.text, cfg.label)


def _imdb_layout(path: Path) -> bool:
    """The aclImdb folder or tarball (train and test splits), rather than one CSV."""
    return path.is_dir() or path.name.endswith((".tar.gz", ".tgz"))


def _classify_build(cfg: TrainConfig, prep: dict) -> Model:
    model = classification.sequence_classifier(
        specs.recurrent_layer(cfg.model), len(prep["classes"]),
        len(prep["vectorizer"]["vocabulary"]) + 2, cfg.embed_dim, optimizer(cfg))
    model.build((None, cfg.maxlen))
    return model


def _classify_arrays(run: Run, path: str, split: str):
    cfg, prep = run.config, run.preprocessing
    texts, labels, lines = _classify_texts(cfg, path, split)
    vectorizer = TextVectorizer.from_config(prep["vectorizer"])
    y = classification.class_ids(labels, prep["classes"], str(path), lines, cfg.label)
    return vectorizer.transform(texts), y


def _classify_prepare(cfg: TrainConfig) -> Prepared:
    texts, labels, lines = _classify_texts(cfg, cfg.data)
    cut = _split(len(texts), cfg.validation_fraction)
    vectorizer = TextVectorizer(max_tokens=cfg.max_tokens, output_sequence_length=cfg.maxlen)
    vectorizer.fit(texts[:cut])  # the training part only
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ConfigError(f"{cfg.data}: column {cfg.label!r} holds one class {classes}; "
                          "classification needs at least two")
    prep = {"vectorizer": vectorizer.to_config(), "classes": classes}
    x = vectorizer.transform(texts)
    y = classification.class_ids(labels, classes, cfg.data, lines, cfg.label)
    return Prepared(prep, _classify_build(cfg, prep),
                    {"x": x[:cut], "y": _labels(y[:cut], classes),
                     "validation_data": (x[cut:], _labels(y[cut:], classes))})


def _labels(y: np.ndarray, classes: list[str]) -> np.ndarray:
    return y.astype(np.float32)[:, None] if len(classes) == 2 else y


def _classify_evaluate(run: Run, path: str, out_dir: Path | None) -> dict:
    cfg, classes = run.config, run.preprocessing["classes"]
    x, y = _classify_arrays(run, path, "test")
    if run.history and not _imdb_layout(Path(path)):  # just trained on this file: its tail
        cut = _split(len(x), cfg.validation_fraction)
        x, y = x[cut:], y[cut:]
    logs = run.model.evaluate(x, _labels(y, classes), batch_size=cfg.batch_size, verbose=0,
                              return_dict=True)
    pred = classification.predicted_classes(run.model.predict(x, verbose=0))
    matrix = classification.confusion_matrix(y, pred, len(classes))
    if out_dir is not None:
        plots.confusion(matrix, classes, out_dir / "confusion_matrix.png")
    return {"model": {"accuracy": float((pred == y).mean()), "loss": logs["loss"]},
            "confusion_matrix": matrix.tolist(), "classes": classes}


def _classify_predict(run: Run, path: str):
    cfg, prep = run.config, run.preprocessing
    texts = _classify_texts(cfg, path, "test")[0] if _imdb_layout(Path(path)) else \
        files.texts(path, cfg.text)
    x = TextVectorizer.from_config(prep["vectorizer"]).transform(texts)
    probs = run.model.predict(x, verbose=0)
    ids = classification.predicted_classes(probs)
    score = probs[:, 0] if probs.shape[-1] == 1 else probs.max(-1)
    return (["text", "prediction", "score"],
            [[t, prep["classes"][i], float(s)] for t, i, s in zip(texts, ids, score)])


# -- generate -------------------------------------------------------------------------------
def _generate_build(cfg: TrainConfig, prep: dict) -> Model:
    vectorizer = TextVectorizer.from_config(prep["vectorizer"])
    model = generation.language_model(specs.recurrent_layer(cfg.model, return_sequences=True),
                                      len(vectorizer.vocabulary), cfg.embed_dim, optimizer(cfg))
    model.build((None, cfg.seq_len))
    return model


def _generate_prepare(cfg: TrainConfig) -> Prepared:
    text = files.read_text(cfg.data)
    cut = _split(len(text), cfg.validation_fraction)
    vectorizer = generation.char_vectorizer(text[:cut])
    prep = {"vectorizer": vectorizer.to_config()}
    x, y = generation.char_windows(text[:cut], vectorizer, cfg.seq_len)
    val = generation.char_windows(text[cut:], vectorizer, min(cfg.seq_len, len(text) - cut - 1))
    return Prepared(prep, _generate_build(cfg, prep), {"x": x, "y": y, "validation_data": val})


def _generate_evaluate(run: Run, path: str, out_dir: Path | None) -> dict:
    cfg = run.config
    text = files.read_text(path)
    if run.history:
        text = text[_split(len(text), cfg.validation_fraction):]
    vectorizer = TextVectorizer.from_config(run.preprocessing["vectorizer"])
    x, y = generation.char_windows(text, vectorizer, min(cfg.seq_len, len(text) - 1))
    logs = run.model.evaluate(x, y, batch_size=cfg.batch_size, verbose=0, return_dict=True)
    prompt = text[:min(20, len(text))]
    samples = {str(t): generation.sample(run.model, vectorizer, prompt, cfg.sample_length, t,
                                         context=cfg.seq_len, seed=cfg.seed)
               for t in (0.2, 0.5, 1.0)}
    return {"model": {"loss": logs["loss"], "accuracy": logs["acc"],
                      "perplexity": float(np.exp(logs["loss"]))}, "samples": samples}


# -- seq2seq --------------------------------------------------------------------------------
def _seq2seq_vectorizers(prep: dict) -> tuple[TextVectorizer, TextVectorizer]:
    return (TextVectorizer.from_config(prep["source"]), TextVectorizer.from_config(prep["target"]))


def _seq2seq_build(cfg: TrainConfig, prep: dict) -> Model:
    src, tgt = _seq2seq_vectorizers(prep)
    bos, eos = s2s.special_ids(tgt)
    decoder = specs.recurrent_layer(cfg.decoder)
    model = s2s.Seq2Seq(specs.recurrent_layer(cfg.model), decoder, len(src.vocabulary),
                        len(tgt.vocabulary), bos, eos, prep["max_length"], cfg.embed_dim)
    model.compile(optimizer=optimizer(cfg), loss="sparse_categorical_crossentropy",
                  metrics=["acc"])
    model.build_from_batch(torch.ones(1, 2, dtype=torch.long))
    return model


def _seq2seq_prepare(cfg: TrainConfig) -> Prepared:
    sources, targets = files.pairs(cfg.data)
    cut = _split(len(sources), cfg.validation_fraction)
    src, tgt = s2s.vectorizers(sources[:cut], targets[:cut])
    y = s2s.encode_targets(tgt, targets)
    prep = {"source": src.to_config(), "target": tgt.to_config(), "max_length": y.shape[1] + 2}
    x = src.transform(sources)
    return Prepared(prep, _seq2seq_build(cfg, prep),
                    {"x": x[:cut], "y": y[:cut], "validation_data": (x[cut:], y[cut:])})


def _seq2seq_evaluate(run: Run, path: str, out_dir: Path | None) -> dict:
    cfg = run.config
    sources, targets = files.pairs(path)
    if run.history:
        cut = _split(len(sources), cfg.validation_fraction)
        sources, targets = sources[cut:], targets[cut:]
    src, tgt = _seq2seq_vectorizers(run.preprocessing)
    x = src.transform(sources)
    logs = run.model.evaluate(x, s2s.encode_targets(tgt, targets), batch_size=cfg.batch_size,
                              verbose=0, return_dict=True)
    greedy = s2s.decode_targets(tgt, run.model.predict(x, verbose=0))
    beam = s2s.decode_targets(tgt, run.model.beam_search(torch.as_tensor(x), cfg.beam_width).numpy())
    return {"model": {"exact_match": s2s.exact_match(greedy, targets),
                      "exact_match_beam": s2s.exact_match(beam, targets),
                      "loss": logs["loss"], "token_accuracy": logs["acc"]}}


def _seq2seq_predict(run: Run, path: str):
    sources = [line for line in files.read_text(path).splitlines() if line.strip()]
    sources = [line.split("\t")[0] for line in sources]
    src, tgt = _seq2seq_vectorizers(run.preprocessing)
    x = torch.as_tensor(src.transform(sources))
    out = s2s.decode_targets(tgt, run.model.beam_search(x, run.config.beam_width).numpy())
    return ["source", "prediction"], [[s, p] for s, p in zip(sources, out)]


_PREPARE = {"forecast": _forecast_prepare, "classify": _classify_prepare,
            "generate": _generate_prepare, "seq2seq": _seq2seq_prepare}
_BUILD = {"forecast": _forecast_build, "classify": _classify_build,
          "generate": _generate_build, "seq2seq": _seq2seq_build}
_EVALUATE = {"forecast": _forecast_evaluate, "classify": _classify_evaluate,
             "generate": _generate_evaluate, "seq2seq": _seq2seq_evaluate}
_PREDICT = {"forecast": _forecast_predict, "classify": _classify_predict,
            "seq2seq": _seq2seq_predict}


# -- public ---------------------------------------------------------------------------------
def prepare(cfg: TrainConfig, for_doctor: bool = False) -> Prepared:
    """Read the data, fit the preprocessing on the training part, build the model.

    ``for_doctor``: read a broken series anyway, so the doctor reports every problem at once:
    cells that are not finite numbers become NaN and are listed in ``source["bad_cells"]``, and
    the normalization ignores them and leaves constant columns unscaled (forecast)."""
    cfg.check()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    if cfg.task == "forecast":
        return _forecast_prepare(cfg, for_doctor)
    return _PREPARE[cfg.task](cfg)


def train(cfg: TrainConfig) -> Run:
    """Train, score on the held-out data and write the run directory ``cfg.out``.

    The options go to ``cfg.out/config.json`` first, and a training checkpoint to
    ``cfg.out/checkpoint`` after every epoch (every ``cfg.checkpoint_every`` optimizer steps when
    given), so a run killed at any moment continues exactly with ``--resume cfg.out`` (see
    ``resume_config``); ``cfg.resume`` names that run directory (or its checkpoint)."""
    ready = prepare(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_config(cfg, out)
    callbacks = forecasting.training_callbacks(cfg.learning_rate, cfg.patience, cfg.lr_decay)
    fit_options = {"epochs": cfg.epochs, "validation_data": ready.data["validation_data"],
                   "verbose": 0 if cfg.quiet else 1, "seed": cfg.seed, "callbacks": callbacks,
                   "checkpoint_dir": out / CHECKPOINT,
                   "checkpoint_every": cfg.checkpoint_every or None,
                   "resume": _checkpoint_to_resume(cfg)}
    if cfg.task == "forecast":
        history = forecasting.fit_forecaster(ready.model, ready.data["x"], **fit_options)
    else:
        history = ready.model.fit(ready.data["x"], ready.data["y"], batch_size=cfg.batch_size,
                                  **fit_options)
    run = Run(cfg, ready.preprocessing, ready.model, history.history)
    # scored and written aside, then moved in: a failure leaves no half-written run directory
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        run.metrics = _EVALUATE[cfg.task](run, cfg.data, Path(tmp))
        save(run, Path(tmp))
        for item in Path(tmp).iterdir():
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    return run


CHECKPOINT = "checkpoint"  # the run directory's training checkpoint
# Options that may differ from a resumed run's saved ones: they do not change what was trained
# (epochs continues a finished run further; the last resume is recorded)
RESUME_MAY_CHANGE = ("resume", "quiet", "threads", "epochs")


def resume_config(directory: str | Path, given: dict | None = None) -> TrainConfig:
    """The options of the run in ``directory`` (its config.json), to continue it: ``given``
    options (from the command line) must agree with them, except ``RESUME_MAY_CHANGE``;
    ``directory`` may also be the run's checkpoint directory."""
    directory = Path(directory)
    if not (directory / "config.json").is_file() and (directory.parent / "config.json").is_file() \
            and directory.name == CHECKPOINT:
        directory = directory.parent
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"resume: {directory}: not a run directory (no config.json); "
                                "give the --out directory of the run to continue")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))["train"]
        cfg = TrainConfig(**saved)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataFormatError(f"{path}: not a run's config.json ({e})") from None
    given = {k: v for k, v in (given or {}).items() if k not in RESUME_MAY_CHANGE}
    for key, value in given.items():
        if not _same_option(key, value, getattr(cfg, key)):
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"resume: {flag} {value!r} contradicts the run's {key} "
                              f"{getattr(cfg, key)!r} ({path}); leave it out to continue the run "
                              "as it was, or train a new run")
    return dataclasses.replace(cfg, resume=str(directory), out=str(directory))


def _same_option(key: str, given, saved) -> bool:
    if key in ("data", "out") and given and saved:
        return Path(given).resolve() == Path(saved).resolve()
    return given == saved


def _checkpoint_to_resume(cfg: TrainConfig) -> Path | None:
    """The checkpoint ``cfg.resume`` continues from; None when the run to resume was killed
    before it wrote one (it then starts over, which ends the same)."""
    if not cfg.resume:
        return None
    resume = Path(cfg.resume)
    for candidate in (resume / CHECKPOINT, resume):
        if (candidate / "training.json").is_file():
            return candidate
    if (resume / "config.json").is_file() or resume.name == CHECKPOINT:
        return None
    raise FileNotFoundError(f"resume: {resume}: neither a run directory nor a training "
                            "checkpoint")


def write_config(cfg: TrainConfig, out: Path) -> None:
    """``out/config.json``: the task and every option, what ``--resume`` reads back."""
    options = dataclasses.asdict(cfg)
    (out / "config.json").write_text(json.dumps({"task": cfg.task, "train": options}, indent=1))


def evaluate(run: Run, path: str, out_dir: Path | None = None) -> dict:
    """The run's metrics (the shape of its metrics.json) on the data at ``path``."""
    return _EVALUATE[run.config.task](run, path, out_dir)


def predict(run: Run, path: str) -> tuple[list[str], list[list]]:
    """(header, rows) of predictions for the data at ``path``."""
    if run.config.task not in _PREDICT:
        raise ConfigError(f"predict: a {run.config.task!r} run has no predict; use "
                          "'rnnkit generate DIR --prompt ...'")
    return _PREDICT[run.config.task](run, path)


def generate(run: Run, prompt: str, length: int = 200, temperature: float = 1.0,
             top_k: int | None = None, seed: int | None = None) -> str:
    """Text continued from ``prompt`` by a ``generate`` run's language model."""
    if run.config.task != "generate":
        raise ConfigError(f"generate: the run was trained for task {run.config.task!r}, not "
                          "'generate'")
    vectorizer = TextVectorizer.from_config(run.preprocessing["vectorizer"])
    return generation.sample(run.model, vectorizer, prompt, length, temperature, top_k,
                             context=run.config.seq_len, seed=seed)


def save(run: Run, out: Path) -> None:
    """Write config.json (the options), model/ (Model.save: weights, architecture and the
    preprocessing), history.csv, metrics.json and the plots."""
    write_config(run.config, out)
    options = dataclasses.asdict(run.config)
    run.model.preprocessing = {"task": run.config.task, "train": options, **run.preprocessing}
    run.model.save(out / "model")
    (out / "metrics.json").write_text(json.dumps(run.metrics, indent=1))
    write_csv(out / "history.csv", ["epoch", *run.history],
              [[i + 1, *values] for i, values in enumerate(zip(*run.history.values()))])
    if run.history:
        plots.training_curves(run.history, out / "training_curves.png")


def load(directory: str | Path) -> Run:
    """A run directory back as a Run: the model (``load_model``), compiled for its task."""
    directory = Path(directory)
    if not (directory / "model" / "config.json").is_file():
        raise FileNotFoundError(f"{directory}: not a run directory (no model/config.json); "
                                "train one with 'rnnkit train ... --out DIR'")
    model = load_model(directory / "model", custom_objects={"Seq2Seq": s2s.Seq2Seq})
    stored = dict(model.preprocessing)
    cfg = TrainConfig(**stored.pop("train"))
    stored.pop("task")
    model.compile(optimizer(cfg), _loss(cfg, stored), metrics=None if cfg.task == "forecast"
                  else ["acc"])
    model.eval()
    return Run(cfg, stored, model)


def _loss(cfg: TrainConfig, prep: dict):
    if cfg.task == "forecast":
        return losses.Pinball(cfg.quantiles) if cfg.quantiles else cfg.loss
    if cfg.task == "classify" and len(prep["classes"]) == 2:
        return "binary_crossentropy"
    return "sparse_categorical_crossentropy"


def write_csv(path: str | Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
