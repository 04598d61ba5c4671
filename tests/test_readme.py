"""The Python code blocks of the README and the docs pages run as they stand (each on its own,
in a scratch folder); the README stays a short first screen whose links all lead somewhere.

A block may opt out only when it needs real data or a GPU, with a first line such as
``# readme-test: skip (needs ../shared/data)``; blocks that train for minutes are marked slow.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SKIP = "# readme-test: skip"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```python block of ``text``."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def _params() -> list:
    params, seen = [], set()
    for page in PAGES:
        name = page.relative_to(ROOT).as_posix()
        for line, code in python_blocks(page.read_text(encoding="utf-8")):
            if code in seen:  # the one-liner of the README, repeated in the docs
                continue
            seen.add(code)
            marks = []
            if code.lstrip().startswith(_SKIP):
                marks.append(pytest.mark.skip(reason=code.lstrip().splitlines()[0]))
            if ".fit(" in code:  # trains for minutes on the CPU
                marks.append(pytest.mark.slow)
            params.append(pytest.param(code, name, id=f"{name}:{line}", marks=marks))
    return params


def test_the_readme_and_docs_have_python_blocks() -> None:
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 1
    assert len(_params()) >= 6  # the one-liner, own loop, Lightning, semi, the Trainer


@pytest.mark.parametrize(("code", "page"), _params())
def test_readme_block_runs_as_it_stands(code: str, page: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # files the block writes (runs/...) land here
    exec(compile(code, str(ROOT / page), "exec"), {"__name__": "__readme__"})


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.lstrip("#").strip().lower())
    return "#" + text.replace(" ", "-")


def _headings(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {_anchor(line) for line in text.splitlines() if line.startswith("#")}


def test_the_first_screen_has_what_a_newcomer_needs() -> None:
    """What it is, how to install, the two commands, the one-liner and links to the command
    line and the results, in the first 50 lines; the headline table right after them."""
    lines = README.read_text(encoding="utf-8").splitlines()
    first = "\n".join(lines[:50])
    for needed in (
        "pip install",
        "make test",
        "make demo",
        "DeepSupervised(",
        "(docs/cli.md)",
        "(docs/results/index.md)",
    ):
        assert needed in first, needed
    assert "<!-- headline:start -->" in "\n".join(lines[:80])


def test_the_readme_is_a_first_screen_not_a_manual() -> None:
    """Under 250 lines: the long sections live in docs/ (issue 30)."""
    assert len(README.read_text(encoding="utf-8").splitlines()) < 250


def test_every_link_of_the_readme_leads_somewhere() -> None:
    """Each relative link names a file of the repository, and each #anchor a heading of it
    (`make docs` checks the docs pages' own links, strictly)."""
    for link in re.findall(r"\]\(([^)\s]+)\)", README.read_text(encoding="utf-8")):
        if "://" in link:
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else README
        assert target.is_file(), f"README links to {link}: no such file"
        if anchor:
            assert f"#{anchor}" in _headings(target), f"README links to {link}: no such heading"
