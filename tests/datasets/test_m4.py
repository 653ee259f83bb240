"""rnnkit.datasets.m4 on small files written in the organisers' format (a quoted "V1", "V2", ...
header, quoted values, rows padded with empty cells), on malformed ones, through a faked download,
and on the real Hourly files when ../shared/data/m4 holds them (RNNKIT_SHARED_DATA points
elsewhere)."""

import io
from pathlib import Path

import numpy as np
import pytest

from helpers import SHARED_DATA
from rnnkit.data import download
from rnnkit.data.download import ChecksumError, DownloadError, sha256_file
from rnnkit.datasets import m4
from rnnkit.errors import ConfigError, DataFormatError

SHARED = SHARED_DATA


def m4_csv(rows: dict[str, list[float]]) -> str:
    """The M4 layout: quoted header V1..Vk, quoted cells, short rows padded with empty cells."""
    width = 1 + max(len(v) for v in rows.values())
    lines = [",".join(f'"V{i}"' for i in range(1, width + 1))]
    for name, values in rows.items():
        cells = [f'"{name}"'] + [f'"{v:g}"' for v in values] + [""] * (width - 1 - len(values))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def write_group(folder: Path, group: str, train: dict, test: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{group}-train.csv").write_text(m4_csv(train))
    (folder / f"{group}-test.csv").write_text(m4_csv(test))
    return folder


def hourly(folder: Path, h: int = 48) -> Path:
    train = {"H1": [1.0, 2.5, 3.0], "H2": [10.0 + i for i in range(6)], "H3": [7.0, 8.0]}
    test = {name: [100.0 * k + j for j in range(h)] for k, name in enumerate(train, 1)}
    return write_group(folder, "Hourly", train, test)


def test_load_drops_the_padding_and_keeps_file_order(tmp_path):
    data = m4.load(hourly(tmp_path), "Hourly")
    assert (data.group, data.ids, data.horizon, data.season) == ("Hourly", ["H1", "H2", "H3"], 48, 24)
    assert [x.tolist() for x in data.train] == [[1.0, 2.5, 3.0], [10, 11, 12, 13, 14, 15], [7, 8]]
    assert all(x.dtype == np.float64 for x in data.train)
    assert data.test.shape == (3, 48) and data.test[2, 5] == 305.0


def test_to_long_steps_are_one_based_and_the_test_continues(tmp_path):
    pytest.importorskip("pandas")
    data = m4.load(hourly(tmp_path), "hourly")
    long = data.to_long()
    assert list(long.columns) == ["unique_id", "ds", "y"] and len(long) == 11
    assert long["unique_id"].tolist() == ["H1"] * 3 + ["H2"] * 6 + ["H3"] * 2
    assert long["ds"].tolist() == [1, 2, 3, 1, 2, 3, 4, 5, 6, 1, 2]
    assert long["y"].tolist()[:3] == [1.0, 2.5, 3.0]
    full = data.to_long(include_test=True)
    h3 = full[full["unique_id"] == "H3"]
    assert h3["ds"].tolist() == list(range(1, 51)) and h3["y"].tolist()[2:4] == [300.0, 301.0]


def test_groups_have_the_competitions_horizons_and_seasons(tmp_path):
    assert m4.GROUPS == {"Yearly": (6, 1), "Quarterly": (8, 4), "Monthly": (18, 12),
                         "Weekly": (13, 1), "Daily": (14, 1), "Hourly": (48, 24)}
    write_group(tmp_path, "Quarterly", {"Q1": [1, 2, 3, 4, 5]}, {"Q1": list(range(8))})
    data = m4.load(tmp_path, "QUARTERLY")
    assert (data.group, data.horizon, data.season, data.test.shape) == ("Quarterly", 8, 4, (1, 8))
    with pytest.raises(ConfigError, match=r"group must be one of \['Yearly', .*'Hourly'\], "
                                          r"got 'Minutely'"):
        m4.load(tmp_path, "Minutely")


@pytest.mark.parametrize("train, test, where, message", [
    ('"V1","V2","V3","V4"\n"H1","1","","3"\n', None, "Hourly-train.csv: line 2, column 'V3'",
     "series H1.*empty cell inside the series"),
    ('"V1","V2","V3"\n"H1","1","x"\n', None, "Hourly-train.csv: line 2, column 'V3'",
     "'x' is not a finite number"),
    ('"V1","V2","V3"\n"H1","1","nan"\n', None, "Hourly-train.csv: line 2, column 'V3'",
     "'nan' is not a finite number"),
    ('"V1","V2","V3"\n"Y1","1","2"\n', None, "Hourly-train.csv: line 2, column 'V1'",
     "series id like H1 .*got 'Y1'"),
    ('"V1","V2","V3"\n"H1","1"\n', None, "Hourly-train.csv: line 2", "2 cells, the header has 3"),
    ('"V1","V2","V3"\n"H1","",""\n', None, "Hourly-train.csv: line 2", "series H1.*no values"),
    ('"id","V2"\n"H1","1"\n', None, "Hourly-train.csv: line 1", "expected the M4 header"),
    ('"V1","V2"\n', None, "Hourly-train.csv", "no series"),
    (None, {"H1": [1.0] * 47}, "Hourly-test.csv: line 2", "47 values, the group's horizon is 48"),
    (None, {"H2": [1.0] * 48}, "Hourly-test.csv: line 2", "series 'H2', the train file has 'H1'"),
    (None, {"H1": [1.0] * 48, "H2": [1.0] * 48}, "Hourly-test.csv", "2 series, the train file "
                                                                     "has 1"),
])
def test_malformed_files_name_file_line_and_column(tmp_path, train, test, where, message):
    write_group(tmp_path, "Hourly", {"H1": [1.0, 2.0]}, {"H1": [1.0] * 48})
    if train is not None:
        (tmp_path / "Hourly-train.csv").write_text(train)
    if test is not None:
        (tmp_path / "Hourly-test.csv").write_text(m4_csv(test))
    with pytest.raises(DataFormatError, match=f"{tmp_path}/{where}.*{message}"):
        m4.load(tmp_path, "Hourly")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="Daily-train.csv: no such file"):
        m4.load(tmp_path, "Daily")


@pytest.fixture
def fake_github(tmp_path, monkeypatch):
    """The M4-methods files served from memory; returns the list of URLs asked for."""
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "cache"))
    files = {
        "Train/Monthly-train.csv": m4_csv({"M1": [float(i) for i in range(30)], "M2": [5.0] * 20}),
        "Test/Monthly-test.csv": m4_csv({"M1": [1.0] * 18, "M2": [2.0] * 18}),
        "Train/Hourly-train.csv": m4_csv({"H1": [1.0, 2.0]}),
        "Test/Hourly-test.csv": m4_csv({"H1": [1.0] * 48}),
    }
    asked = []

    def serve(url):
        asked.append(url)
        prefix = "https://raw.githubusercontent.com/Mcompetitions/M4-methods/master/Dataset/"
        assert url.startswith(prefix), url
        return io.BytesIO(files[url[len(prefix):]].encode())

    monkeypatch.setattr(download, "_open", serve)
    return asked


def test_download_into_the_cache_and_reuse_it(fake_github, tmp_path, monkeypatch):
    data = m4.load(group="Monthly")
    assert data.ids == ["M1", "M2"] and [len(x) for x in data.train] == [30, 20]
    assert (data.horizon, data.season) == (18, 12)
    assert sorted(p.name for p in (tmp_path / "cache" / "m4").iterdir()) == [
        "Monthly-test.csv", "Monthly-train.csv"]
    assert [u.rsplit("/", 2)[1:] for u in fake_github] == [["Train", "Monthly-train.csv"],
                                                            ["Test", "Monthly-test.csv"]]


def test_download_checks_the_pinned_sha256(fake_github, tmp_path):
    with pytest.raises(ChecksumError, match=f"Hourly-train.csv: sha256 mismatch: expected "
                                            f"{m4.SHA256['Hourly-train.csv']}"):
        m4.load(group="Hourly")
    assert not (tmp_path / "cache" / "m4" / "Hourly-train.csv").exists()


def test_offline_names_the_url_and_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path))

    def offline(url):
        raise OSError("network is unreachable")

    monkeypatch.setattr(download, "_open", offline)
    with pytest.raises(DownloadError, match="M4-methods/master/Dataset/Train/Weekly-train.csv .*"
                                            f"put it at {tmp_path / 'm4' / 'Weekly-train.csv'}"):
        m4.load(group="Weekly")


def test_the_real_hourly_files():
    folder = SHARED / "m4"
    if not (folder / "Hourly-train.csv").exists():
        pytest.skip(f"real data absent: {folder}/Hourly-train.csv")
    for name in ("Hourly-train.csv", "Hourly-test.csv"):
        assert sha256_file(folder / name) == m4.SHA256[name]
    data = m4.load(folder)
    assert data.ids == [f"H{i}" for i in range(1, 415)] and data.test.shape == (414, 48)
    lengths = [len(x) for x in data.train]
    assert (min(lengths), max(lengths), sum(lengths)) == (700, 960, 353_500)
    assert data.train[0][:3].tolist() == [605.0, 586.0, 586.0]
    assert data.test[0][:3].tolist() == [619.0, 565.0, 532.0]
