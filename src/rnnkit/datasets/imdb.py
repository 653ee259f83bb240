"""The IMDB movie-review sentiment dataset, as ``keras.datasets.imdb``, plus the raw reviews.

``load_data`` returns the same arrays as Keras for the same ``imdb.npz`` file; ``load_raw_text``
reads the original ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`` layout, from a folder or
a ``.tar.gz``.
"""

from __future__ import annotations

import json
import re
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data.csv import DataFormatError
from ..data.download import fetch
from ..errors import ConfigError

_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
NPZ_URL, NPZ_SHA256 = (_ORIGIN + "imdb.npz",
                       "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f")
WORD_INDEX_URL, WORD_INDEX_SHA256 = (
    _ORIGIN + "imdb_word_index.json",
    "027313fe9a320280f3bf0fac5baf58c4a683cf39a7ed9c3d3d3912bde4284cf6")
RAW_URL, RAW_SHA256 = ("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                       "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe")
_REVIEW = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_KEYS = ("x_train", "y_train", "x_test", "y_test")

Split = tuple[np.ndarray, np.ndarray]


def load_data(path: str | Path | None = None, num_words: int | None = None, skip_top: int = 0,
              maxlen: int | None = None, seed: int = 113, start_char: int | None = 1,
              oov_char: int | None = 2, index_from: int = 3) -> tuple[Split, Split]:
    """``(x_train, y_train), (x_test, y_test)``: x (N,) object arrays of lists of word ids,
    y (N,) int labels (1 positive, 0 negative), exactly as ``keras.datasets.imdb.load_data``.

    The steps, in Keras's order: shuffle train, then test, with one
    ``np.random.RandomState(seed)``; prepend ``start_char`` and add ``index_from`` to every rank;
    drop sequences whose length (start included) is not below ``maxlen``; replace ids
    ``>= num_words`` or ``< skip_top`` by ``oov_char`` (or drop them when it is None).
    ``num_words=None`` is the largest id, which Keras also turns into ``oov_char``.

    ``path``: a local ``imdb.npz`` (any bytes, no checksum); None downloads Keras's file into the
    cache and checks its sha256.
    """
    source = Path(path) if path is not None else fetch(NPZ_URL, NPZ_SHA256, "imdb.npz")
    x_train, y_train, x_test, y_test = _read_npz(source)
    rng = np.random.RandomState(seed)
    order = _shuffled(rng, len(x_train))
    x_train, y_train = x_train[order], y_train[order]
    order = _shuffled(rng, len(x_test))
    x_test, y_test = x_test[order], y_test[order]
    train = _offset(x_train, start_char, index_from, source, "x_train")
    test = _offset(x_test, start_char, index_from, source, "x_test")
    if maxlen:
        train, y_train = _drop_long(train, y_train, maxlen)
        test, y_test = _drop_long(test, y_test, maxlen)
        if not train or not test:
            raise ConfigError(f"imdb.load_data: no sequence is shorter than maxlen={maxlen}; "
                              "increase maxlen")
    xs = _limit_vocabulary(train + test, num_words, skip_top, oov_char)
    return (_objects(xs[:len(train)]), y_train), (_objects(xs[len(train):]), y_test)


def get_word_index(path: str | Path | None = None) -> dict[str, int]:
    """The word -> rank dict of ``imdb_word_index.json`` (``"the": 1``); rank r is id
    ``r + index_from`` in :func:`load_data`. ``path``: a local copy; None downloads Keras's file."""
    source = Path(path) if path is not None else fetch(
        WORD_INDEX_URL, WORD_INDEX_SHA256, "imdb_word_index.json")
    with open(_existing(source), encoding="utf-8") as f:
        try:
            index = json.load(f)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{source}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(index, dict):
        raise DataFormatError(f"{source}: expected a JSON object of word -> rank")
    for word, rank in index.items():
        if not isinstance(rank, int) or rank < 1:
            raise DataFormatError(f"{source}: word {word!r}: rank {rank!r} is not an integer >= 1")
    return index


def load_raw_text(path: str | Path | None = None) -> tuple[tuple[list[str], np.ndarray],
                                                          tuple[list[str], np.ndarray]]:
    """``(train_texts, train_labels), (test_texts, test_labels)`` from the original reviews.

    ``path``: the ``aclImdb`` folder, its parent, or a ``.tar.gz`` of it; None downloads the
    Stanford tarball. Within a split the reviews come negative first, then positive, each by file
    id; labels (N,) int64 are 0 negative, 1 positive. A file whose rating disagrees with its
    folder (negative 1-4, positive 7-10) is an error.
    """
    source = Path(path) if path is not None else fetch(RAW_URL, RAW_SHA256, "aclImdb_v1.tar.gz")
    reviews = {"train": [], "test": []}
    for name, text in _read_reviews(_existing(source)):
        split, folder, review_id, rating = _REVIEW.search(name).groups()
        label = int(folder == "pos")
        if not (7 <= int(rating) <= 10 if label else 1 <= int(rating) <= 4):
            raise DataFormatError(f"{source}: {name}: rating {rating} is outside the classes of "
                                  f"folder {folder!r} (neg 1-4, pos 7-10)")
        reviews[split].append((label, int(review_id), text))
    for split, items in reviews.items():
        if not items:
            raise DataFormatError(f"{source}: no reviews under aclImdb/{split}/{{pos,neg}}/")
        items.sort(key=lambda item: item[:2])
    return tuple(([t for _, _, t in items], np.array([lab for lab, _, _ in items], np.int64))
                 for items in reviews.values())


def _read_reviews(source: Path) -> Iterator[tuple[str, str]]:
    """(name, text) of every review file: names as ``.../aclImdb/train/pos/0_9.txt``."""
    if source.is_dir():
        root = source if source.name == "aclImdb" else source / "aclImdb"
        for file in sorted(root.glob("*/*/*.txt")):
            name = "aclImdb/" + file.relative_to(root).as_posix()
            if _REVIEW.search(name):
                yield name, file.read_text(encoding="utf-8")
        return
    try:
        archive = tarfile.open(source, "r:*")
    except tarfile.TarError as e:
        raise DataFormatError(f"{source}: not a folder or a tar archive ({e})") from None
    with archive:
        for member in archive:
            if member.isfile() and _REVIEW.search(member.name):
                yield member.name, archive.extractfile(member).read().decode("utf-8")


def _existing(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return path


def _read_npz(source: Path) -> tuple[np.ndarray, ...]:
    """The four arrays of an ``imdb.npz``, checked: x (N,) of sequences, y (N,) labels 0/1."""
    # np.load would unpickle a bare pickle file: accept only .npz (zip) archives
    if not zipfile.is_zipfile(_existing(source)):
        raise DataFormatError(f"{source}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(source, allow_pickle=True) as f:
            arrays = {k: f[k] for k in _KEYS if k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataFormatError(f"{source}: not a readable .npz file ({e})") from None
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise DataFormatError(f"{source}: missing array {missing[0]!r}; the file has "
                              f"{sorted(arrays)}")
    arrays = [arrays[k] for k in _KEYS]
    for x_key, y_key, x, y in ((*_KEYS[:2], *arrays[:2]), (*_KEYS[2:], *arrays[2:])):
        _check_pair(source, x_key, y_key, x, y)
    return tuple(arrays)


def _check_pair(source: Path, x_key: str, y_key: str, x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 1 or y.ndim != 1 or len(x) != len(y):
        raise DataFormatError(f"{source}: {x_key} {x.shape} and {y_key} {y.shape} must be 1-D "
                              "of the same length")
    if len(x) == 0:
        raise DataFormatError(f"{source}: {x_key} is empty")
    bad = np.flatnonzero((y != 0) & (y != 1))
    if len(bad):
        raise DataFormatError(f"{source}: {y_key}[{bad[0]}]: label {y[bad[0]].item()!r} is not one of "
                              "the classes 0, 1")


def _shuffled(rng: np.random.RandomState, n: int) -> np.ndarray:
    indices = np.arange(n)
    rng.shuffle(indices)
    return indices


def _offset(seqs: np.ndarray, start_char: int | None, index_from: int, source: Path,
            key: str) -> list[list[int]]:
    """Every rank shifted by ``index_from``, ``start_char`` first when not None."""
    head = [] if start_char is None else [start_char]
    out = []
    for i, seq in enumerate(seqs):
        try:
            out.append(head + [w + index_from for w in seq])
        except TypeError:
            raise DataFormatError(f"{source}: {key}[{i}] is not a sequence of integer word "
                                  "ranks") from None
    return out


def _drop_long(seqs: list[list[int]], labels: np.ndarray,
               maxlen: int) -> tuple[list[list[int]], np.ndarray]:
    """Keeps the sequences strictly shorter than ``maxlen``, as Keras's ``remove_long_seq``."""
    keep = [i for i, s in enumerate(seqs) if len(s) < maxlen]
    return [seqs[i] for i in keep], labels[keep]


def _limit_vocabulary(xs: list[list[int]], num_words: int | None, skip_top: int,
                      oov_char: int | None) -> list[list[int]]:
    if not num_words:
        num_words = max(max(x) for x in xs)
    if oov_char is not None:
        return [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    return [[w for w in x if skip_top <= w < num_words] for x in xs]


def _objects(seqs: list[list[int]]) -> np.ndarray:
    """A 1-D object array of lists, even when every list has the same length."""
    out = np.empty(len(seqs), dtype=object)
    for i, seq in enumerate(seqs):
        out[i] = seq
    return out
