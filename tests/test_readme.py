"""The README's Python code blocks run as they stand (each on its own, in a scratch folder).

A block may opt out only when it needs real data or a GPU, with a first line such as
``# readme-test: skip (needs ../shared/data)``; blocks that train for minutes are marked slow.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SKIP = "# readme-test: skip"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```python block of ``text``."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def _params() -> list:
    params = []
    for line, code in python_blocks(README.read_text(encoding="utf-8")):
        marks = []
        if code.lstrip().startswith(_SKIP):
            marks.append(pytest.mark.skip(reason=code.lstrip().splitlines()[0]))
        if ".fit(" in code:  # trains for minutes on the CPU
            marks.append(pytest.mark.slow)
        params.append(pytest.param(code, id=f"README.md:{line}", marks=marks))
    return params


def test_the_readme_has_python_blocks() -> None:
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 2


@pytest.mark.parametrize("code", _params())
def test_readme_block_runs_as_it_stands(code: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # files the block writes (runs/...) land here
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.lstrip("#").strip().lower())
    return "#" + text.replace(" ", "-")


def test_the_first_screen_has_what_a_newcomer_needs() -> None:
    """What it is, how to install, the two commands, the one-liner and links to the command
    line and the results, in the first 50 lines; the CLI reference right after them."""
    lines = README.read_text(encoding="utf-8").splitlines()
    first = "\n".join(lines[:50])
    for needed in (
        "pip install",
        "make test",
        "make demo",
        "DeepSupervised(",
        "(#command-line)",
        "(#results)",
    ):
        assert needed in first, needed
    headings = {_anchor(line): i for i, line in enumerate(lines) if line.startswith("#")}
    for link in re.findall(r"\]\((#[^)]+)\)", first):
        assert link in headings, f"the first screen links to {link}, which is no heading"
    assert headings["#command-line"] < 60  # not 500 lines down
