"""The dataset loaders (imdb, jena, ett), on small files written in the exact formats, and on the
real files in ../shared/data when present."""

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import SHARED_DATA
from rnnkit.data import DataFormatError
from rnnkit.datasets import ett, imdb, jena

SHARED = SHARED_DATA

X_TRAIN = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10], [2, 2]]
Y_TRAIN = [0, 1, 0, 1, 1]
X_TEST = [[3], [5, 6], [1, 1, 1], [8]]
Y_TEST = [1, 0, 0, 1]


def objects(seqs):
    out = np.empty(len(seqs), dtype=object)
    for i, s in enumerate(seqs):
        out[i] = list(s)
    return out


@pytest.fixture
def npz(tmp_path):
    path = tmp_path / "imdb.npz"
    np.savez(path, x_train=objects(X_TRAIN), y_train=np.array(Y_TRAIN),
             x_test=objects(X_TEST), y_test=np.array(Y_TEST))
    return path


def as_lists(x):
    return [list(s) for s in x]


# RandomState(113) shuffles arange(5) to [1, 0, 3, 2, 4], then arange(4) to [0, 1, 3, 2].
def test_imdb_load_data_defaults(npz):
    (x_train, y_train), (x_test, y_test) = imdb.load_data(npz)
    assert x_train.dtype == object and x_train.shape == (5,)
    # num_words=None is the largest id (13), which Keras also maps to oov_char
    assert as_lists(x_train) == [[1, 7, 8], [1, 4, 5, 6], [1, 10, 11, 12, 2], [1, 9], [1, 5, 5]]
    assert y_train.tolist() == [1, 0, 1, 0, 1]
    assert as_lists(x_test) == [[1, 6], [1, 8, 9], [1, 11], [1, 4, 4, 4]]
    assert y_test.tolist() == [1, 0, 1, 0]


def test_imdb_num_words_skip_top(npz):
    (x_train, _), _ = imdb.load_data(npz, num_words=10, skip_top=5)
    assert as_lists(x_train) == [[2, 7, 8], [2, 2, 5, 6], [2, 2, 2, 2, 2], [2, 9], [2, 5, 5]]


def test_imdb_maxlen_keeps_strictly_shorter(npz):
    (x_train, y_train), (x_test, y_test) = imdb.load_data(npz, maxlen=3)
    assert as_lists(x_train) == [[1, 9]] and y_train.tolist() == [0]
    assert as_lists(x_test) == [[1, 6], [1, 2]] and y_test.tolist() == [1, 1]


def test_imdb_no_oov_char_drops_and_other_seed(npz):
    (x_train, y_train), (x_test, y_test) = imdb.load_data(
        npz, num_words=8, oov_char=None, start_char=None, index_from=0, seed=7)
    # RandomState(7): train order [0, 3, 2, 1, 4], test order [2, 1, 0, 3]
    assert as_lists(x_train) == [[1, 2, 3], [7], [6], [4, 5], [2, 2]]
    assert y_train.tolist() == [0, 1, 0, 1, 1]
    assert as_lists(x_test) == [[1, 1, 1], [5, 6], [3], []]
    assert y_test.tolist() == [0, 0, 1, 1]


def test_imdb_bad_files(tmp_path):
    bad_label = tmp_path / "label.npz"
    np.savez(bad_label, x_train=objects(X_TRAIN), y_train=np.array([0, 1, 3, 1, 0]),
             x_test=objects(X_TEST), y_test=np.array(Y_TEST))
    with pytest.raises(DataFormatError, match=r"label.npz: y_train\[2\]: label 3 is not one"):
        imdb.load_data(bad_label)
    missing = tmp_path / "missing.npz"
    np.savez(missing, x_train=objects(X_TRAIN), y_train=np.array(Y_TRAIN))
    with pytest.raises(DataFormatError, match="missing.npz: missing array 'x_test'"):
        imdb.load_data(missing)
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataFormatError, match="junk.npz: not a readable .npz"):
        imdb.load_data(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        imdb.load_data(tmp_path / "nowhere.npz")


def test_imdb_get_word_index(tmp_path):
    (tmp_path / "wi.json").write_text(json.dumps({"the": 1, "and": 2}))
    assert imdb.get_word_index(tmp_path / "wi.json") == {"the": 1, "and": 2}
    (tmp_path / "bad.json").write_text(json.dumps({"the": "one"}))
    with pytest.raises(DataFormatError, match="word 'the': rank 'one'"):
        imdb.get_word_index(tmp_path / "bad.json")


REVIEWS = {"train/pos/10_9.txt": "great", "train/pos/2_7.txt": "good <br />film",
           "train/neg/0_1.txt": "awful", "test/neg/5_4.txt": "meh", "test/pos/1_10.txt": "wow",
           "train/unsup/0_0.txt": "ignored"}


def write_acl(root: Path, reviews=REVIEWS) -> Path:
    for name, text in reviews.items():
        file = root / "aclImdb" / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text, encoding="utf-8")
    (root / "aclImdb" / "README").write_text("readme")
    return root / "aclImdb"


def test_imdb_raw_text_from_folder_and_tarball(tmp_path):
    folder = write_acl(tmp_path)
    with tarfile.open(tmp_path / "acl.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="aclImdb")
    expected_train = (["awful", "good <br />film", "great"], [0, 1, 1])
    for source in (folder, tmp_path, tmp_path / "acl.tar.gz"):
        (train_x, train_y), (test_x, test_y) = imdb.load_raw_text(source)
        assert (train_x, train_y.tolist()) == expected_train
        assert (test_x, test_y.tolist()) == (["meh", "wow"], [0, 1])


def test_imdb_raw_text_rating_outside_the_class(tmp_path):
    write_acl(tmp_path, {**REVIEWS, "test/pos/3_4.txt": "mislabelled"})
    with pytest.raises(DataFormatError, match=r"aclImdb/test/pos/3_4.txt: rating 4 is outside"):
        imdb.load_raw_text(tmp_path)


def jena_csv(rows: int = 5) -> str:
    header = ",".join(f'"{c}"' for c in [jena.DATE_COLUMN, *jena.COLUMNS])
    lines = [header]
    for i in range(rows):
        minutes = 10 * (i + 1)
        date = f"01.01.2009 {minutes // 60:02d}:{minutes % 60:02d}:00"
        lines.append(",".join([date, *(f"{i + j / 100:.2f}" for j in range(14))]))
    return "\n".join(lines) + "\n"


def test_jena_load_csv_and_zip(tmp_path):
    (tmp_path / "jena.csv").write_text(jena_csv())
    with zipfile.ZipFile(tmp_path / "jena.zip", "w") as z:
        z.writestr("jena_climate_2009_2016.csv", jena_csv())
    for path in (tmp_path / "jena.csv", tmp_path / "jena.zip"):
        s = jena.load(path)
        assert s.values.shape == (5, 14) and s.columns[1] == "T (degC)"
        assert s.values[2, 1] == 2.01 and s.values[4, 13] == 4.13
        assert s.timestamps[0] == np.datetime64("2009-01-01T00:10:00")
        assert s.timestamps[5 - 1] == np.datetime64("2009-01-01T00:50:00")


def test_jena_bad_date_and_missing_column(tmp_path):
    text = jena_csv().replace("01.01.2009 00:30:00", "31.02.2009 00:30:00")
    (tmp_path / "date.csv").write_text(text)
    with pytest.raises(DataFormatError, match="date.csv: line 4, column 'Date Time': not a valid"):
        jena.load(tmp_path / "date.csv")
    (tmp_path / "col.csv").write_text(jena_csv().replace('"wd (deg)"', '"wd"'))
    with pytest.raises(DataFormatError, match="col.csv: line 1 \\(header\\): missing column 'wd"):
        jena.load(tmp_path / "col.csv")


def write_ett(path: Path, rows: int, minutes: int = 60) -> np.ndarray:
    values = np.round(np.random.default_rng(0).normal(size=(rows, 7)) * 10 + 20, 3)
    dates = np.datetime64("2016-07-01T00:00") + np.arange(rows) * np.timedelta64(minutes, "m")
    buf = io.StringIO()
    buf.write("date," + ",".join(ett.COLUMNS) + "\n")
    for d, row in zip(dates, values):
        buf.write(str(d).replace("T", " ") + ":00," + ",".join(map(repr, row.tolist())) + "\n")
    path.write_text(buf.getvalue())
    return values


def test_ett_standard_split_and_standardize(tmp_path):
    values = write_ett(tmp_path / "ETTh1.csv", 14_500)
    raw = ett.load(tmp_path / "ETTh1.csv")
    assert raw.borders == (8640, 11520, 14400)
    assert [len(s.values) for s in (raw.train, raw.val, raw.test)] == [8640, 2880, 2880]
    np.testing.assert_array_equal(raw.val.values[0], values[8640])
    assert raw.test.timestamps[-1] == np.datetime64("2018-02-20T23:00:00")
    scaled = ett.load(tmp_path / "ETTh1.csv", standardize=True)
    mean, std = values[:8640].mean(0), values[:8640].std(0)
    np.testing.assert_allclose(scaled.test.values, (values[11520:14400] - mean) / std)
    np.testing.assert_allclose(scaled.normalizer.mean, mean)


def test_ett_quarter_hourly_split(tmp_path):
    write_ett(tmp_path / "ETTm1.csv", 57_600, minutes=15)
    assert ett.load(tmp_path / "ETTm1.csv").borders == (34560, 46080, 57600)


def test_ett_too_short(tmp_path):
    write_ett(tmp_path / "short.csv", 100)
    with pytest.raises(DataFormatError, match="short.csv: 100 rows, the 12/4/4-month split"):
        ett.load(tmp_path / "short.csv")


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data absent: {path}")
    return path


@pytest.mark.slow
def test_real_imdb_rebuilt_npz():
    (x_train, y_train), (x_test, y_test) = imdb.load_data(
        shared("imdb", "imdb_rebuilt.npz"), num_words=10_000)
    assert len(x_train) == len(y_train) == 25_000 and len(x_test) == 25_000
    # the well-known first review of keras.datasets.imdb.load_data(num_words=10000)
    assert x_train[0][:10] == [1, 14, 22, 16, 43, 530, 973, 1622, 1385, 65]
    assert y_train[:10].tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 1, 0]
    assert max(max(x) for x in x_train) == 9_999


def test_real_imdb_word_index():
    index = imdb.get_word_index(shared("imdb", "imdb_word_index.json"))
    assert len(index) == 88_584 and index["the"] == 1


@pytest.mark.slow
def test_real_imdb_raw_tarball():
    (train_x, train_y), (test_x, test_y) = imdb.load_raw_text(
        shared("imdb", "aclImdb_v1_labeled.tar.gz"))
    assert len(train_x) == len(test_x) == 25_000
    assert train_y.sum() == test_y.sum() == 12_500


def test_real_etth1_split():
    data = ett.load(shared("timeseries", "ETTh1.csv"), standardize=True)
    assert [len(s.values) for s in (data.train, data.val, data.test)] == [8640, 2880, 2880]
    assert len(data.full.values) == 17_420
    assert data.full.timestamps[0] == np.datetime64("2016-07-01T00:00:00")
    np.testing.assert_allclose(data.train.values.mean(0), 0.0, atol=1e-9)


def test_real_jena():
    s = jena.load(shared("jena_climate_2009_2016.csv"))
    assert s.values.shape == (420_551, 14)


def test_loaders_read_the_cache_and_fail_offline_with_the_path(tmp_path, monkeypatch):
    from rnnkit.data import DownloadError, download

    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path))

    def offline(url):
        raise OSError("network is unreachable")

    monkeypatch.setattr(download, "_open", offline)
    write_ett(tmp_path / "ETTh2.csv", 14_400)  # no pinned checksum: the cached file is used
    assert ett.load(name="ETTh2").borders == (8640, 11520, 14400)
    with pytest.raises(DownloadError, match=f"imdb.npz .*put it at {tmp_path / 'imdb.npz'}"):
        imdb.load_data()
    with pytest.raises(DownloadError, match="jena_climate_2009_2016.csv.zip"):
        jena.load()
