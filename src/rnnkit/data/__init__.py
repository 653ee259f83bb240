"""Data: padding, text vectorization, time-series windows and baselines, CSV reading, downloads."""

from .csv import DataFormatError, Table, iter_chunks, parse_timestamps, read_table
from .download import ChecksumError, DownloadError, cache_dir, fetch, sha256_file
from .sequence import pad_sequences
from .text import TextVectorizer
from .timeseries import (
    Normalizer,
    Series,
    WindowDataset,
    csv_to_npy,
    evaluate,
    generator,
    last_value,
    linear,
    seasonal_naive,
)

__all__ = [
    "ChecksumError", "DataFormatError", "DownloadError", "Normalizer", "Series", "Table",
    "TextVectorizer", "WindowDataset", "cache_dir", "csv_to_npy", "evaluate", "fetch",
    "generator", "iter_chunks", "last_value", "linear", "pad_sequences", "parse_timestamps",
    "read_table", "seasonal_naive", "sha256_file",
]
