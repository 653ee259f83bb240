"""Optional packages: a missing one is one line saying how to install it, never a traceback; the
Python floor pyproject claims is the one the suite runs on. (.ci/bare_install.sh does the same
on a fresh venv with only ``pip install .``.)"""

import sys
import tomllib

import numpy as np
import pytest

from helpers import REPO
from rnnkit import cli, layers, optional, plots
from rnnkit.errors import MissingDependencyError, RnnkitError
from rnnkit.interop import load_keras
from rnnkit.models import Sequential

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_python_floor_is_the_one_the_suite_runs_on():
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"  # tomllib
    assert sys.version_info >= (3, 11)
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py311"


def test_every_install_hint_names_an_extra_that_brings_the_package():
    extras = PYPROJECT["project"]["optional-dependencies"]
    for package, extra in optional.EXTRAS.items():
        assert any(dep.split(">")[0].split(";")[0].strip() == package for dep in extras[extra]), \
            (package, extra)
    assert not any(dep.split(">")[0] in optional.EXTRAS
                   for dep in PYPROJECT["project"]["dependencies"])


def test_a_run_without_matplotlib_skips_its_plots_with_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr(plots, "_told", False)
    plots.training_curves({"loss": [1.0, 0.5]}, tmp_path / "curves.png")
    plots.forecast(["OT"], np.zeros((3, 1)), {"gru": np.ones((3, 1))}, tmp_path / "forecast.png",
                   ahead=1, horizon=24)
    plots.confusion(np.eye(2, dtype=int), ["a", "b"], tmp_path / "confusion.png")
    err = capsys.readouterr().err
    assert err == ("rnnkit: plots skipped (matplotlib is not installed): "
                   "pip install 'rnnkit[plots]'\n")
    assert list(tmp_path.iterdir()) == []


def test_a_doctor_figure_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError,
                       match=r"plotting needs the optional package 'matplotlib', which is not "
                             r"installed: pip install 'rnnkit\[plots\]'"):
        plots.plot_history({"loss": [1.0, 0.5]}, tmp_path / "history.png")
    assert list(tmp_path.iterdir()) == []


def test_onnx_export_without_onnx_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    model = Sequential([layers.GRU(2), layers.Dense(1)])
    model.build((None, 4, 3))
    with pytest.raises(MissingDependencyError,
                       match=r"ONNX export needs the optional package 'onnx', which is not "
                             r"installed: pip install 'rnnkit\[export\]'"):
        model.export(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_reading_a_keras_file_without_h5py_says_how_to_install(monkeypatch, tmp_path):
    import zipfile

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'rnnkit\[keras\]'"):
        load_keras(path)


def test_the_cli_prints_a_missing_package_as_one_error_line(monkeypatch, capsys):
    def export(args):
        optional.require("onnxscript", "ONNX export")

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    monkeypatch.setitem(cli.COMMANDS, "export", export)
    assert cli.main(["export", "run", "--out", "m.onnx"]) == 2
    err = capsys.readouterr().err
    assert err == ("rnnkit: error: ONNX export needs the optional package 'onnxscript', which is "
                   "not installed: pip install 'rnnkit[export]'\n")
    assert issubclass(MissingDependencyError, RnnkitError)
    assert issubclass(MissingDependencyError, ImportError)
