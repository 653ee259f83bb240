"""Sequence classification (many-to-one): one label per sequence, binary or multi-class.

``Embedding`` (for token ids) -> a recurrent layer returning its last output -> ``Dense``:
one sigmoid unit with binary cross-entropy for two classes, C softmax units with sparse
categorical cross-entropy for more, as the lecture's IMDB model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import plots
from ..data.csv import DataFormatError
from ..data.text import TextVectorizer
from ..datasets import imdb
from ..errors import ConfigError
from ..layers import Dense, Embedding, Layer
from ..models import Model, Sequential
from . import files, specs
from .protocol import (
    Prepared,
    Run,
    Task,
    TrainConfig,
    check_fraction,
    check_positive,
    holdout,
    optimizer,
    register,
)


def sequence_classifier(recurrent: Layer, num_classes: int, vocab_size: int | None = None,
                        embed_dim: int = 32, optimizer="rmsprop") -> Sequential:
    """A compiled classifier: ids (B, T) (with ``vocab_size``) or features (B, T, I) ->
    probabilities (B, 1) for two classes, (B, C) for C > 2. Padding id 0 is masked."""
    if num_classes < 2:
        raise ConfigError(f"sequence_classifier: need at least 2 classes, got {num_classes}")
    layers = [] if vocab_size is None else [Embedding(vocab_size, embed_dim, mask_zero=True)]
    binary = num_classes == 2
    layers += [recurrent, Dense(1 if binary else num_classes,
                                activation="sigmoid" if binary else "softmax")]
    model = Sequential(layers)
    model.compile(optimizer=optimizer, metrics=["acc"],
                  loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy")
    return model


def class_ids(labels: Sequence[str], classes: Sequence[str], source: str = "labels",
              lines: Sequence[int] | None = None, column: str = "label") -> np.ndarray:
    """Labels -> (N,) int64 ids in ``classes``; a label outside them raises DataFormatError
    naming ``source``, the line and the column."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        if label not in index:
            line = lines[i] if lines is not None else i + 1
            raise DataFormatError(f"{source}: line {line}, column {column!r}: label {label!r} is "
                                  f"not one of the classes {list(classes)}")
        out[i] = index[label]
    return out


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """(N, 1) sigmoid or (N, C) softmax outputs -> (N,) class ids."""
    if probabilities.shape[-1] == 1:
        return (probabilities[:, 0] > 0.5).astype(np.int64)
    return probabilities.argmax(-1)


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(true), np.asarray(pred)), 1)
    return out


# -- the task: ``rnnkit train --task classify`` -----------------------------------------------
@dataclass
class ClassifyOptions:
    """Options of the classify task: a CSV of texts and labels, or the aclImdb folder/tarball."""

    text: str = "text"
    label: str = "label"
    max_tokens: int = 10000
    maxlen: int = 200
    embed_dim: int = 32
    validation_fraction: float = 0.2


class Classify(Task):
    name, options = "classify", ClassifyOptions
    help = {"text": "the CSV column holding the texts", "label": "the CSV column of the labels",
            "max_tokens": "vocabulary size (most frequent words of the training part)",
            "maxlen": "tokens per text (longer cut, shorter padded)",
            "embed_dim": "embedding width", "validation_fraction": "held-out tail of the rows"}

    def check(self, cfg: TrainConfig) -> None:
        check_positive(cfg.options, "maxlen", "max_tokens", "embed_dim")
        check_fraction(cfg.options.validation_fraction)

    def build(self, cfg: TrainConfig, prep: dict) -> Model:
        model = sequence_classifier(specs.recurrent_layer(cfg.model), len(prep["classes"]),
                                    len(prep["vectorizer"]["vocabulary"]) + 2,
                                    cfg.options.embed_dim, optimizer(cfg))
        model.build((None, cfg.options.maxlen))
        return model

    def prepare(self, cfg: TrainConfig, for_doctor: bool = False) -> Prepared:
        opt = cfg.options
        texts, labels, lines = _texts(opt, cfg.data)
        cut = holdout(len(texts), opt.validation_fraction)
        vectorizer = TextVectorizer(max_tokens=opt.max_tokens, output_sequence_length=opt.maxlen)
        vectorizer.fit(texts[:cut])  # the training part only
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ConfigError(f"{cfg.data}: column {opt.label!r} holds one class {classes}; "
                              "classification needs at least two")
        prep = {"vectorizer": vectorizer.to_config(), "classes": classes}
        x = vectorizer.transform(texts)
        y = class_ids(labels, classes, cfg.data, lines, opt.label)
        return Prepared(prep, self.build(cfg, prep),
                        {"x": x[:cut], "y": _labels(y[:cut], classes),
                         "validation_data": (x[cut:], _labels(y[cut:], classes))})

    def evaluate(self, run: Run, path: str, out_dir: Path | None) -> dict:
        cfg, classes = run.config, run.preprocessing["classes"]
        x, y = _arrays(run, path)
        if run.history and not _imdb_layout(Path(path)):  # just trained on this file: its tail
            cut = holdout(len(x), cfg.options.validation_fraction)
            x, y = x[cut:], y[cut:]
        logs = run.model.evaluate(x, _labels(y, classes), batch_size=cfg.batch_size, verbose=0,
                                  return_dict=True)
        pred = predicted_classes(run.model.predict(x, verbose=0))
        matrix = confusion_matrix(y, pred, len(classes))
        if out_dir is not None:
            plots.confusion(matrix, classes, out_dir / "confusion_matrix.png")
        return {"model": {"accuracy": float((pred == y).mean()), "loss": logs["loss"]},
                "confusion_matrix": matrix.tolist(), "classes": classes}

    def predict(self, run: Run, path: str) -> tuple[list[str], list[list]]:
        opt, prep = run.config.options, run.preprocessing
        texts = _texts(opt, path, "test")[0] if _imdb_layout(Path(path)) else \
            files.texts(path, opt.text)
        x = TextVectorizer.from_config(prep["vectorizer"]).transform(texts)
        probs = run.model.predict(x, verbose=0)
        ids = predicted_classes(probs)
        score = probs[:, 0] if probs.shape[-1] == 1 else probs.max(-1)
        return (["text", "prediction", "score"],
                [[t, prep["classes"][i], float(s)] for t, i, s in zip(texts, ids, score)])

    def loss(self, cfg: TrainConfig, prep: dict):
        return "binary_crossentropy" if len(prep["classes"]) == 2 \
            else "sparse_categorical_crossentropy"


def _texts(opt: ClassifyOptions, path: str, split: str = "train"):
    """(texts, labels as strings, file lines or None) from a CSV, or from the ``split`` of an
    aclImdb folder or tarball (labels "neg", "pos")."""
    source = Path(path)
    if _imdb_layout(source):
        train, test = imdb.load_raw_text(source)
        texts, labels = train if split == "train" else test
        return texts, [("neg", "pos")[i] for i in labels], None
    return files.labeled_texts(source, opt.text, opt.label)


def _imdb_layout(path: Path) -> bool:
    """The aclImdb folder or tarball (train and test splits), rather than one CSV."""
    return path.is_dir() or path.name.endswith((".tar.gz", ".tgz"))


def _arrays(run: Run, path: str) -> tuple[np.ndarray, np.ndarray]:
    opt, prep = run.config.options, run.preprocessing
    texts, labels, lines = _texts(opt, path, "test")
    vectorizer = TextVectorizer.from_config(prep["vectorizer"])
    return vectorizer.transform(texts), class_ids(labels, prep["classes"], str(path), lines,
                                                  opt.label)


def _labels(y: np.ndarray, classes: list[str]) -> np.ndarray:
    """Class ids as the loss reads them: (N, 1) float for two classes, (N,) ids for more."""
    return y.astype(np.float32)[:, None] if len(classes) == 2 else y


register(Classify())
