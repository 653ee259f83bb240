"""Data: padding, text vectorization, time-series windows and baselines, panels of many series,
CSV reading, downloads."""

from .csv import DataFormatError, Table, iter_chunks, parse_timestamps, read_table
from .download import ChecksumError, DownloadError, cache_dir, fetch, sha256_file
from .panel import (
    Panel,
    SeriesScaler,
    calendar_features,
    check_lengths,
    read_long,
    split_borders,
)
from .panel_windows import PanelWindows, WindowLayout
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
    "ChecksumError", "DataFormatError", "DownloadError", "Normalizer", "Panel", "PanelWindows",
    "Series", "SeriesScaler", "Table", "TextVectorizer", "WindowDataset", "WindowLayout",
    "cache_dir", "calendar_features", "check_lengths", "csv_to_npy", "evaluate", "fetch",
    "generator", "iter_chunks", "last_value", "linear", "pad_sequences", "parse_timestamps",
    "read_long", "read_table", "seasonal_naive", "sha256_file", "split_borders",
]
