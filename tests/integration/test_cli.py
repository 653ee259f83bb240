"""The rnnkit command, driven in-process on small generated files."""

import csv
import json

import numpy as np
import pytest

from rnnkit import cli
from rnnkit.data.csv import DataFormatError
from rnnkit.errors import ConfigError
from rnnkit.tasks import protocol, runs

FAST = ["--epochs", "1", "--quiet", "--batch-size", "32"]


def _train(files, tmp_path, task, *args):
    out = tmp_path / task
    assert cli.main(["train", "--task", task, "--out", str(out), *FAST, *args]) == 0
    return out


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_forecast_run_directory_and_baselines_in_target_units(files, tmp_path):
    out = _train(files, tmp_path, "forecast", "--data", str(files / "series.csv"), "--target",
                 "temp", "--lookback", "12", "--horizon", "1", "--model", "gru:4",
                 "--season", "12")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model", "history.csv", "metrics.json",
            "training_curves.png", "forecast.png"} <= names
    assert {"config.json", "model.safetensors"} <= {p.name for p in (out / "model").iterdir()}
    metrics = _metrics(out)
    assert set(metrics) == {"model", "baselines", "standardized", "targets"}
    assert set(metrics["baselines"]) == {"last_value", "seasonal_naive", "linear", "nlinear",
                                         "dlinear"}
    assert all(set(m) == {"mae", "rmse"} for m in [metrics["model"], *metrics["baselines"].values()])
    # last value by hand, in °-units of the raw 'temp' column: test rows [192, 240)
    temp = np.loadtxt(files / "series.csv", delimiter=",", skiprows=1, usecols=2)
    errors = temp[192:240] - temp[191:239]
    assert metrics["baselines"]["last_value"]["mae"] == pytest.approx(np.abs(errors).mean(), rel=1e-6)
    assert metrics["baselines"]["last_value"]["rmse"] == pytest.approx(
        np.sqrt((errors**2).mean()), rel=1e-6)
    with open(out / "history.csv") as f:
        rows = list(csv.reader(f))
    # the forecast defaults decay the learning rate (lr_decay 0.8), so the history logs it
    assert rows[0][:3] == ["epoch", "loss", "val_loss"] and len(rows) == 2
    assert set(rows[0]) <= {"epoch", "loss", "val_loss", "learning_rate", "lr"}


def test_forecast_evaluate_and_predict(files, tmp_path, capsys):
    out = _train(files, tmp_path, "forecast", "--data", str(files / "series.csv"), "--target",
                 "temp", "--features", "a", "--lookback", "8", "--horizon", "3", "--model",
                 "lstm:4")
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--data", str(files / "series.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == _metrics(out)
    preds = tmp_path / "preds.csv"
    assert cli.main(["predict", str(out), "--data", str(files / "series.csv"), "--out",
                     str(preds), "--quiet"]) == 0
    with open(preds) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "temp"] and [r[0] for r in rows[1:]] == ["1", "2", "3"]
    saved = json.loads((out / "model" / "config.json").read_text())["preprocessing"]
    assert saved["columns"] == ["a", "temp"] and saved["train"]["lookback"] == 8


def test_classify_metrics_confusion_matrix_and_predict(files, tmp_path, capsys):
    out = _train(files, tmp_path, "classify", "--data", str(files / "reviews.csv"), "--text",
                 "review", "--label", "sentiment", "--model", "bidirectional-gru:4",
                 "--maxlen", "6")
    metrics = _metrics(out)
    assert set(metrics["model"]) == {"accuracy", "loss"}
    assert metrics["classes"] == ["neg", "pos"]
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == 12  # the held-out 20% of 60 reviews
    assert metrics["model"]["accuracy"] == pytest.approx(np.trace(matrix) / 12)
    assert (out / "confusion_matrix.png").is_file()
    capsys.readouterr()
    assert cli.main(["predict", str(out), "--data", str(files / "reviews.csv")]) == 0
    rows = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert rows[0] == ["text", "prediction", "score"] and len(rows) == 61
    assert {r[1] for r in rows[1:]} <= {"neg", "pos"}


def test_generate_samples_and_generate_command(files, tmp_path, capsys):
    out = _train(files, tmp_path, "generate", "--data", str(files / "text.txt"), "--model",
                 "lstm-coupled:8", "--seq-len", "16",
                 "--sample-length", "12")
    metrics = _metrics(out)
    assert set(metrics) == {"model", "samples"}
    assert set(metrics["model"]) == {"loss", "accuracy", "perplexity"}
    assert metrics["model"]["perplexity"] == pytest.approx(np.exp(metrics["model"]["loss"]))
    assert set(metrics["samples"]) == {"0.2", "0.5", "1.0"}
    assert all(len(s) == 20 + 12 for s in metrics["samples"].values())  # prompt + sampled
    capsys.readouterr()
    assert cli.main(["generate", str(out), "--prompt", "the ", "--temperature", "0.5",
                     "--top-k", "3", "--length", "10", "--seed", "1"]) == 0
    text = capsys.readouterr().out.rstrip("\n")
    assert text.startswith("the ") and len(text) == 14


def test_seq2seq_exact_match_and_predict(files, tmp_path, capsys):
    out = _train(files, tmp_path, "seq2seq", "--data", str(files / "add.tsv"), "--model",
                 "gru:8", "--decoder", "lstm:8", "--beam-width", "2")
    assert set(_metrics(out)["model"]) == {"exact_match", "exact_match_beam", "loss",
                                           "token_accuracy"}
    (tmp_path / "src.txt").write_text("1+2\n3+4\n")
    capsys.readouterr()
    assert cli.main(["predict", str(out), "--data", str(tmp_path / "src.txt")]) == 0
    rows = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert rows[0] == ["source", "prediction"] and [r[0] for r in rows[1:]] == ["1+2", "3+4"]


def test_missing_target_column_is_named(files, tmp_path, capsys):
    argv = ["train", "--task", "forecast", "--data", str(files / "series.csv"), "--target",
            "nope", "--out", str(tmp_path / "x"), *FAST]
    with pytest.raises(ConfigError, match=r"target \(--target\): column 'nope' is not a numeric "
                                          r"column of .*series.csv; its numeric columns are"):
        cli.run(argv)
    assert cli.main(argv) == 2
    assert "rnnkit: error:" in capsys.readouterr().err


def test_label_outside_classes_at_evaluate_names_line(files, tmp_path):
    out = _train(files, tmp_path, "classify", "--data", str(files / "reviews.csv"), "--text",
                 "review", "--label", "sentiment", "--model", "gru:4", "--maxlen", "6")
    bad = tmp_path / "bad.csv"
    bad.write_text("review,sentiment\ngood film,pos\nthe film,meh\n")
    with pytest.raises(DataFormatError, match=r"bad.csv: line 3, column 'sentiment': label 'meh'"):
        cli.run(["evaluate", str(out), "--data", str(bad)])


def test_toml_config_with_flag_override(files, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f'task = "forecast"\ndata = "{files / "series.csv"}"\ntarget = "temp"\n'
                      'lookback = 6\nmodel = "simple:3"\nepochs = 3\nsplit = [0.6, 0.2, 0.2]\n'
                      'quiet = true\n')
    out = tmp_path / "cfg"
    assert cli.main(["train", "--config", str(config), "--epochs", "1", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())["train"]
    assert saved["epochs"] == 1 and saved["lookback"] == 6 and saved["model"] == "simple:3"
    assert saved["split"] == [0.6, 0.2, 0.2]


@pytest.mark.parametrize("text, message", [
    ('epochs = "ten"\n', r"key 'epochs': expected an integer, got str 'ten'"),
    ("lookbak = 5\n", r"unknown key 'lookbak'; expected one of"),
    ("split = [0.5, 'x']\n", r"key 'split': expected a list of numbers"),
    ("quiet = 1\n", r"key 'quiet': expected true or false"),
    ("epochs = \n", r"not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        cli.run(["train", "--config", str(config)])


def test_config_errors_before_reading_data(tmp_path):
    with pytest.raises(ConfigError, match="target: forecasting needs the target column"):
        cli.run(["train", "--task", "forecast", "--data", "x.csv"])
    with pytest.raises(FileNotFoundError, match=r"resume: .*: not a run directory \(no config"):
        cli.run(["train", "--task", "forecast", "--data", str(tmp_path / "s.csv"), "--target",
                 "t", "--resume", str(tmp_path)])
    with pytest.raises(ConfigError, match=r"task: expected one of \(.*'forecast'"):
        cli.run(["train", "--task", "dance", "--data", "x.csv"])
    with pytest.raises(ConfigError, match=r"model spec 'lstm32'"):
        cli.run(["train", "--task", "generate", "--data", "x.txt", "--model", "lstm32"])
    with pytest.raises(FileNotFoundError, match=r"not a run directory \(no model/config.json\)"):
        cli.run(["evaluate", str(tmp_path), "--data", "x.csv"])


def test_train_config_defaults_match_the_dataclass():
    cfg = cli.train_config(cli.parse(["train", "--lookback", "5", "--features", "a,b"]))
    assert cfg.task == "forecast"  # the default task
    assert cfg.options.lookback == 5 and cfg.options.features == ["a", "b"]
    assert cfg.options.horizon == protocol.TrainConfig().options.horizon
    assert cfg.epochs == protocol.get("forecast").defaults["epochs"]  # the task's default
    classify = cli.train_config(cli.parse(["train", "classify", "--data", "r.csv"]))
    assert classify.epochs == protocol.COMMON_DEFAULTS["epochs"]  # a common option left out


def test_a_task_named_first_takes_only_its_own_options(capsys):
    cfg = cli.train_config(cli.parse(["train", "classify", "--data", "r.csv", "--maxlen", "7"]))
    assert cfg.task == "classify" and cfg.options.maxlen == 7
    with pytest.raises(SystemExit):  # a forecast option is not a classify option
        cli.parse(["train", "classify", "--data", "r.csv", "--lookback", "7"])
    assert "unrecognized arguments: --lookback" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.parse(["train", "generate", "--help"])
    text = capsys.readouterr().out
    assert "options of task 'generate'" in text and "--seq-len" in text
    assert "--lookback" not in text and "--maxlen" not in text


def test_toml_options_are_checked_against_the_task(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('task = "classify"\nmaxlen = 9\n')
    assert cli.load_config(path) == {"task": "classify", "maxlen": 9}
    path.write_text('task = "classify"\nlookback = 9\n')
    with pytest.raises(ConfigError, match=r"run.toml: unknown key 'lookback'"):
        cli.load_config(path)


def test_doctor_reports_on_what_train_would_fit(files, capsys):
    argv = ["doctor", "--task", "forecast", "--data", str(files / "series.csv"), "--target",
            "temp", "--lookback", "8", "--model", "gru:3", "--probe-steps", "2"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith("rnnkit doctor:")
    passed = text.split("passed: ")[-1]
    assert "non-finite-values" in passed and "normalization-leak" in passed
    assert cli.main([*argv, "--json"]) == 0
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert "non-finite-values" not in {f["check"] for f in findings}


def test_seeded_runs_repeat_and_resume_continues(files, tmp_path):
    common = ["--task", "generate", "--data", str(files / "text.txt"), "--model", "gru:6",
              "--seq-len", "16", "--sample-length", "5", "--seed", "3"]
    one = _train(files, tmp_path / "a", *common[1:])
    two = _train(files, tmp_path / "b", *common[1:])
    assert _metrics(one) == _metrics(two)
    assert cli.main(["train", *common, "--out", str(one), "--quiet", "--batch-size", "32",
                     "--epochs", "2", "--resume", str(one / "checkpoint")]) == 0
    with open(one / "history.csv") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows[1:]] == ["1", "2"]


def test_export_onnx_matches_the_model(files, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = _train(files, tmp_path, "forecast", "--data", str(files / "series.csv"), "--target",
                 "temp", "--lookback", "6", "--horizon", "2", "--model", "gru:3")
    path = tmp_path / "f.onnx"
    assert cli.main(["export", str(out), "--format", "onnx", "--out", str(path), "--quiet"]) == 0
    x = np.random.default_rng(1).standard_normal((4, 6, 2)).astype(np.float32)
    session = ort.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    expected = runs.load(out).model.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_classify_reads_the_aclimdb_layout_and_scores_its_test_split(tmp_path):
    rng = np.random.default_rng(2)
    words = {"pos": ["good", "great"], "neg": ["bad", "awful"]}
    for split, n in (("train", 20), ("test", 6)):
        for folder, ratings in (("pos", (7, 10)), ("neg", (1, 4))):
            d = tmp_path / "aclImdb" / split / folder
            d.mkdir(parents=True)
            for i in range(n // 2):
                text = " ".join(rng.choice(words[folder] + ["film"], 4))
                (d / f"{i}_{ratings[i % 2]}.txt").write_text(text)
    out = tmp_path / "run"
    assert cli.main(["train", "--task", "classify", "--data", str(tmp_path / "aclImdb"),
                     "--model", "gru:3", "--maxlen", "4", "--out", str(out), *FAST]) == 0
    metrics = _metrics(out)
    assert metrics["classes"] == ["neg", "pos"]
    assert np.array(metrics["confusion_matrix"]).sum(axis=1).tolist() == [3, 3]  # all 6 test reviews


def test_doctor_json_on_a_csv_with_nan_empty_and_text_cells(tmp_path, capsys):
    """Every bad cell is counted (the first 20 listed with line, column and text) in the same
    JSON report as the other checks; exit code 1."""
    rng = np.random.default_rng(0)
    bad = {12: ("a", ""), 30: ("a", "n/a"), 31: ("temp", "nan"), 77: ("a", "")}
    bad.update({100 + i: ("temp", "") for i in range(21)})  # 25 bad cells in all
    path = tmp_path / "broken.csv"
    with open(path, "w") as f:
        f.write("a,flat,temp\n")
        for row in range(240):
            cells = {"a": f"{np.sin(row / 4):.4f}", "flat": "7", "temp": f"{rng.normal():.4f}"}
            if row in bad:
                cells[bad[row][0]] = bad[row][1]
            f.write(",".join(cells.values()) + "\n")
    argv = ["doctor", "--task", "forecast", "--data", str(path), "--target", "temp",
            "--lookback", "8", "--model", "gru:3", "--probe-steps", "2", "--json"]
    assert cli.main(argv) == 1
    report = json.loads(capsys.readouterr().out)
    by_check = {f["check"]: f for f in report["findings"]}
    cells = by_check["non-finite-values"]["where"]
    assert cells["count"] == 25 and cells["kinds"] == {"empty": 23, "text": 1, "nan": 1}
    assert len(cells["positions"]) == 20
    assert cells["positions"][:3] == [
        {"row": 12, "feature": 0, "file": str(path), "line": 14, "column": "a", "cell": ""},
        {"row": 30, "feature": 0, "file": str(path), "line": 32, "column": "a", "cell": "n/a"},
        {"row": 31, "feature": 2, "file": str(path), "line": 33, "column": "temp", "cell": "nan"}]
    assert by_check["constant-columns"]["where"]["columns"] == ["'flat'"]
    assert by_check["gradient-probe"]["severity"] == "info"  # the probe waits for clean data


def test_doctor_json_is_json_whatever_happens(tmp_path, capsys):
    argv = ["doctor", "--task", "forecast", "--data", str(tmp_path / "missing.csv"), "--target",
            "t", "--json"]
    assert cli.main(argv) == 1
    (finding,) = json.loads(capsys.readouterr().out)["findings"]
    assert finding["check"] == "input" and "missing.csv: no such file" in finding["message"]
    assert cli.main(["doctor", "--task", "dance", "--data", "x.csv", "--json"]) == 1
    assert "task: expected one of" in json.loads(capsys.readouterr().out)["findings"][0]["message"]
    assert cli.main(argv[:-1]) == 2  # without --json a user error stays an error line
