"""The docs agree with the sources of their figures, and every file they name exists (tools/docs_check.py)."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def docs_check():
    spec = importlib.util.spec_from_file_location("docs_check", ROOT / "tools" / "docs_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_repository_docs_pass_the_check(docs_check):
    assert docs_check.check(ROOT) == []


def write_tree(root: pathlib.Path, readme: str, results: str, doc_extra: str = "") -> None:
    (root / "docs").mkdir()
    (root / "docs" / "results.md").write_text(results)
    (root / "docs" / "benchmarks.md").write_text("# Benchmarks\n" + doc_extra)
    (root / "README.md").write_text(readme)


SOURCE = "# Results\n<!-- demo: begin -->\n| a | b |\n|---|---|\n| 1 | 2 |\n<!-- demo: end -->\n"
COPY = "# x\n<!-- figure:demo:begin -->\n{}\n<!-- figure:demo:end -->\n"


def test_write_copies_the_block_and_then_the_check_passes(docs_check, tmp_path):
    write_tree(tmp_path, COPY.format("| a | b |\n|---|---|\n| 9 | 9 |"), SOURCE)
    sources = docs_check.source_blocks(tmp_path)[0]
    copied = docs_check.copy_figures((tmp_path / "README.md").read_text(), sources)
    assert "| 1 | 2 |" in copied and "| 9 | 9 |" not in copied
    (tmp_path / "README.md").write_text(copied)
    assert docs_check.check(tmp_path) == []


def test_a_stale_figure_fails(docs_check, tmp_path):
    write_tree(tmp_path, COPY.format("| a | b |\n|---|---|\n| 9 | 9 |"), SOURCE)
    assert docs_check.check(tmp_path) == [
        "README.md: figure 'demo' differs from its source (python tools/docs_check.py --write copies it)"]


def test_a_figure_without_a_source_fails(docs_check, tmp_path):
    write_tree(tmp_path, COPY.format("x").replace("demo", "gone"), SOURCE)
    assert docs_check.check(tmp_path) == [
        "README.md: figure 'gone' has no block in docs/results.md or docs/benchmarks.md"]


def test_a_block_defined_twice_fails(docs_check, tmp_path):
    write_tree(tmp_path, "# x\n", SOURCE, doc_extra=SOURCE)
    assert docs_check.check(tmp_path) == ["docs/benchmarks.md: block 'demo' is defined in two sources"]


def test_missing_files_fail_and_existing_ones_pass(docs_check, tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "src" / "rnnkit").mkdir(parents=True)
    (tmp_path / "tests" / "test_here.py").write_text("")
    (tmp_path / "src" / "rnnkit" / "engine").mkdir()
    (tmp_path / "src" / "rnnkit" / "engine" / "scan.py").write_text("")
    readme = ("Run `pytest tests/test_here.py::test_one` and `tests/test_gone.py`; read\n"
              "`engine/scan.py` and `engine/gone.py`, see\n"
              "[results](docs/results.md#the-demo), [gone](docs/gone.md), [web](https://example.org).\n"
              "```bash\npython examples/missing.py --out runs/x\n```\n")
    write_tree(tmp_path, readme, "# Results\nsee [benchmarks](benchmarks.md) and `src/rnnkit/...`\n")
    assert docs_check.check(tmp_path) == [
        "README.md: names examples/missing.py, which does not exist",
        "README.md: names tests/test_gone.py, which does not exist",
        "README.md: names engine/gone.py, which does not exist",
        "README.md: links to docs/gone.md, which does not exist",
    ]


def test_a_name_that_does_not_resolve_fails(docs_check, tmp_path):
    readme = "Call `rnnkit.engine.explain` and `rnnkit.engine.explains`; import rnnkit.nowhere.\n"
    write_tree(tmp_path, readme, "# Results\n")
    assert docs_check.check(tmp_path) == [
        "README.md: names rnnkit.engine.explains, which does not resolve",
        "README.md: names rnnkit.nowhere, which does not resolve",
    ]
