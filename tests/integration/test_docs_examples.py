"""The code of the guides runs: every ```python block of docs/guides/*.md, in order, one namespace
per page, in a fresh directory. A block after ``<!-- no-run: why -->`` is skipped; the reason is
required (only real data or a GPU justify it)."""

import pathlib
import re

import pytest
import torch

GUIDES = sorted((pathlib.Path(__file__).resolve().parents[2] / "docs" / "guides").glob("*.md"))
BLOCK = re.compile(r"^(?:<!-- no-run(?P<why>[^>]*)-->\n)?```python\n(?P<code>.*?)^```", re.S | re.M)


def runnable_blocks(text: str) -> list[str]:
    """The code of each ```python block not marked no-run; a no-run mark without a reason raises."""
    code = []
    for m in BLOCK.finditer(text):
        if m.group("why") is None:
            code.append(m.group("code"))
        elif not m.group("why").strip(" :"):
            raise ValueError(f"a no-run mark without a reason before: {m.group('code')[:60]!r}")
    return code


def test_no_run_needs_a_reason_and_unmarked_blocks_run():
    text = "```python\na = 1\n```\n<!-- no-run: needs a GPU -->\n```python\nb = 2\n```\n"
    assert runnable_blocks(text) == ["a = 1\n"]
    with pytest.raises(ValueError, match="without a reason"):
        runnable_blocks("<!-- no-run -->\n```python\nb = 2\n```\n")


def test_there_are_guides():
    assert len(GUIDES) >= 5


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: p.stem)
def test_guide_code_runs(page, tmp_path, monkeypatch):
    blocks = runnable_blocks(page.read_text())
    assert blocks, f"{page.name} has no runnable python block"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"guide_{page.stem}"}
    threads = torch.get_num_threads()  # `rnnkit train --threads 1` sets the process's count
    try:
        for i, code in enumerate(blocks, 1):
            exec(compile(code, f"{page.name}, python block {i}", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
