"""User-facing errors. Each names where the problem is, what was expected and what came."""

from __future__ import annotations


class RnnkitError(Exception):
    """Base class of every error rnnkit raises on purpose."""


class ShapeError(RnnkitError, ValueError):
    """An input, state or target has the wrong rank or size."""


class ConfigError(RnnkitError, ValueError):
    """An argument or name (optimizer, loss, metric, backend) is not valid."""


class BackendError(RnnkitError, RuntimeError):
    """An explicitly requested kernel cannot run the given configuration."""


class NotBuiltError(RnnkitError, RuntimeError):
    """A layer or model was used before its shapes were known."""


class DataFormatError(RnnkitError, ValueError):
    """A data file is empty, lacks a column, or holds a value that is not allowed."""


class DownloadError(RnnkitError, OSError):
    """A file could not be downloaded (offline, unreachable host, refused)."""


class ChecksumError(RnnkitError, ValueError):
    """A downloaded or cached file does not have the expected sha256."""


class NonFiniteError(RnnkitError, FloatingPointError):
    """A loss, gradient or weight became NaN or inf (or NaN weights were about to be saved)."""


def where(name: str | None) -> str:
    return f"{name}: " if name else ""


def expect_rank(x, rank: int, name: str | None, what: str = "input") -> None:
    if x.dim() != rank:
        raise ShapeError(
            f"{where(name)}expected {what} of rank {rank}, got shape {tuple(x.shape)} "
            f"(rank {x.dim()})"
        )


class MissingDependencyError(RnnkitError, ImportError):
    """An optional package a feature needs is not installed (the message says how to get it)."""
