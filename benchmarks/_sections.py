"""Generated sections of Markdown pages: each between its two markers, rewritten from what
renders it, or checked against it (``guidance.py`` lists them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Section", "rendered", "replace_section", "stale"]


@dataclass(frozen=True)
class Section:
    """One generated section: the file, its markers and what renders it."""

    path: Path
    start: str
    end: str
    render: Callable[[], str]


def replace_section(text: str, section: str, start: str, end: str) -> str:
    """``text`` with the section between ``start`` and ``end`` replaced (both must be there)."""
    if start not in text or end not in text:
        raise ValueError(f"the page has no {start} ... {end} section to replace.")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{section}\n{end}{tail}"


def rendered(sections: Sequence[Section], root: Path) -> dict[Path, str]:
    """Each file's text with every one of its sections as generated now (errors name the file
    relative to ``root``)."""
    texts: dict[Path, str] = {}
    for s in sections:
        text = texts.get(s.path) or s.path.read_text(encoding="utf-8")
        try:
            texts[s.path] = replace_section(text, s.render(), s.start, s.end)
        except ValueError as exc:
            raise ValueError(f"{s.path.relative_to(root)}: {exc}") from None
    return texts


def stale(sections: Sequence[Section], root: Path) -> list[str]:
    """``file: marker`` of each section whose text differs from what renders it."""
    found = []
    for s in sections:
        text = s.path.read_text(encoding="utf-8")
        if s.start not in text or s.end not in text:
            found.append(f"{s.path.relative_to(root)}: {s.start} (its markers are missing)")
        elif replace_section(text, s.render(), s.start, s.end) != text:
            found.append(f"{s.path.relative_to(root)}: {s.start}")
    return found
