"""Downloads into a local cache: checksum-verified, written atomically, with a clear offline error.

The cache is ``$RNNKIT_DATA`` when set, else ``~/.cache/rnnkit``. A download goes to a temporary
file in the cache folder, is fsync'ed and then renamed over the target with ``os.replace``, so a
crash mid-download never leaves a truncated file under the final name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import ChecksumError, DownloadError

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The folder downloads are cached in: ``$RNNKIT_DATA`` or ``~/.cache/rnnkit``."""
    root = os.environ.get("RNNKIT_DATA")
    return Path(root) if root else Path.home() / ".cache" / "rnnkit"


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _open(url: str):
    """Opens ``url`` for reading; tests replace this to simulate the network."""
    return urllib.request.urlopen(url, timeout=60)


def fetch(url: str, sha256: str | None, filename: str) -> Path:
    """The cached copy of ``url`` at ``cache_dir() / filename``, downloading it when needed.

    A cached file whose sha256 differs from ``sha256`` is downloaded again. ``sha256=None`` is for
    sources that publish no checksum: the file is then taken as it comes.

    Raises:
        ChecksumError: the download does not match ``sha256`` (the partial file is removed).
        DownloadError: the download failed; the message names the URL and where to put the file
            by hand.
    """
    dest = cache_dir() / filename
    if dest.exists() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _copy(url, out, dest)
            out.flush()
            os.fsync(out.fileno())
        if sha256 is not None and digest != sha256:
            raise ChecksumError(f"{url}: sha256 mismatch: expected {sha256}, got {digest}; the "
                                "download was discarded")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _copy(url: str, out, dest: Path) -> str:
    """Streams ``url`` into the open file ``out``; returns the sha256 of what was written."""
    digest = hashlib.sha256()
    try:
        with _open(url) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(
            f"could not download {url} ({e}). Without a network, download it elsewhere and put "
            f"it at {dest} (set RNNKIT_DATA to change the folder), or pass path= to the loader"
        ) from e
    return digest.hexdigest()
