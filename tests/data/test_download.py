"""fetch: cache location, checksum, atomic write, offline error. No network: file:// URLs and a
replaced opener."""

import hashlib
import io
import urllib.error
from pathlib import Path

import pytest

from rnnkit.data import download
from rnnkit.data.download import ChecksumError, DownloadError, cache_dir, fetch, sha256_file

PAYLOAD = b"0123456789" * 300_000  # 3 MB: several 1 MiB chunks
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("RNNKIT_DATA", str(folder))
    return folder


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "remote.bin"
    path.write_bytes(PAYLOAD)
    return path.as_uri()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_cache_dir_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("RNNKIT_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "rnnkit"


def test_fetch_downloads_checks_and_reuses_the_cache(cache, source, monkeypatch):
    path = fetch(source, DIGEST, "data.bin")
    assert path == cache / "data.bin" and path.read_bytes() == PAYLOAD
    assert leftovers(cache) == ["data.bin"]

    def no_network(url):
        raise AssertionError("a verified cached file must not be downloaded again")

    monkeypatch.setattr(download, "_open", no_network)
    assert fetch(source, DIGEST, "data.bin") == path


def test_fetch_replaces_a_corrupt_cached_file(cache, source):
    cache.mkdir()
    (cache / "data.bin").write_bytes(b"truncated")
    assert fetch(source, DIGEST, "data.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_removes_the_download(cache, source):
    with pytest.raises(ChecksumError, match=f"sha256 mismatch: expected {'0' * 64}, got {DIGEST}"):
        fetch(source, "0" * 64, "data.bin")
    assert leftovers(cache) == []


class Interrupted(Exception):
    pass


class DiesMidway(io.BytesIO):
    """A response that delivers one chunk and then dies (a crash, not a network error)."""

    def read(self, size=-1):
        if self.tell() > 0:
            raise Interrupted
        return super().read(size)


def test_crash_mid_write_keeps_the_previous_file(cache, monkeypatch):
    cache.mkdir()
    (cache / "data.bin").write_bytes(b"previous version")
    monkeypatch.setattr(download, "_open", lambda url: DiesMidway(PAYLOAD))
    with pytest.raises(Interrupted):
        fetch("https://example.invalid/data.bin", DIGEST, "data.bin")
    assert (cache / "data.bin").read_bytes() == b"previous version"
    assert leftovers(cache) == ["data.bin"]


def test_offline_error_names_url_and_destination(cache, monkeypatch):
    def offline(url):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download, "_open", offline)
    url = "https://storage.example.invalid/imdb.npz"
    with pytest.raises(DownloadError) as info:
        fetch(url, DIGEST, "imdb.npz")
    message = str(info.value)
    assert url in message and f"put it at {cache / 'imdb.npz'}" in message
    assert leftovers(cache) == []


def test_missing_file_url_is_a_download_error(cache, tmp_path):
    with pytest.raises(DownloadError, match="could not download file://"):
        fetch((tmp_path / "absent.bin").as_uri(), None, "absent.bin")


def test_no_checksum_accepts_what_comes(cache, source):
    assert sha256_file(fetch(source, None, "any.bin")) == DIGEST
