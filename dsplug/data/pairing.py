"""Pair image and mask files by glob templates with an ``{id}`` field; unpaired files are an
error."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import DataError
from .splits import natural_key

__all__ = ["match_template", "pair_files"]

_SHOW = 10


def _regex(template: str) -> re.Pattern[str]:
    parts = template.split("{id}")
    out = []
    for i, part in enumerate(parts):
        literal = re.escape(part).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        out.append(literal)
        if i < len(parts) - 1:
            out.append("(?P<id>[^/]+?)" if i == 0 else "(?P=id)")
    return re.compile("".join(out))


def _check(template: str, what: str) -> None:
    if not isinstance(template, str) or "{id}" not in template:
        raise ValueError(
            f"{what} template must be a relative path with an '{{id}}' field, e.g. "
            f"'images/{{id}}.png', got {template!r}."
        )
    if template.startswith("/") or ".." in Path(template).parts:
        raise ValueError(f"{what} template must be relative to the root, got {template!r}.")
    if re.search(r"\{(?!id\})", template):
        raise ValueError(f"{what} template may only use the '{{id}}' field, got {template!r}.")


def match_template(root: str | Path, template: str, what: str = "file") -> dict[str, Path]:
    """Files under ``root`` matching ``template`` (``*`` and ``?`` as in glob; ``{id}`` may
    repeat and must then be equal, as PH2's ``images/{id}/{id}_lesion/{id}_lesion.png``).

    Returns:
        ``{id: path}`` in natural order of the ids.

    Raises:
        DataError: two files with the same id.
    """
    _check(template, what)
    root = Path(root)
    pattern = _regex(template)
    found: dict[str, Path] = {}
    for path in sorted(root.glob(template.replace("{id}", "*"))):
        if not path.is_file():
            continue
        m = pattern.fullmatch(path.relative_to(root).as_posix())
        if m is None:
            continue
        case = m.group("id")
        if case in found:
            raise DataError(
                path, f"has the same {what} id {case!r} as {found[case]} (template {template!r})"
            )
        found[case] = path
    return dict(sorted(found.items(), key=lambda kv: natural_key(kv[0])))


def pair_files(root: str | Path, image: str, label: str) -> list[tuple[str, Path, Path]]:
    """Pair files under ``root`` by the ``{id}`` of two templates.

    Example:
        >>> pair_files("isbi/train", "image/{id}.png", "label/{id}.png")  # doctest: +SKIP
        [('0', .../image/0.png, .../label/0.png), ...]

    Returns:
        ``(id, image path, label path)`` in natural order of the ids.

    Raises:
        DataError: no root, no matching file, or unpaired files (listing them).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "folder not found")
    images = match_template(root, image, "image")
    labels = match_template(root, label, "mask")
    if not images and not labels:
        raise DataError(
            root,
            f"no file matches the image template {image!r} or the mask template {label!r}"
            " (empty dataset)",
        )
    lonely_images = [str(p.relative_to(root)) for c, p in images.items() if c not in labels]
    lonely_labels = [str(p.relative_to(root)) for c, p in labels.items() if c not in images]
    if lonely_images or lonely_labels:
        problems = []
        if lonely_images:
            more = "..." if len(lonely_images) > _SHOW else ""
            problems.append(
                f"{len(lonely_images)} image(s) without a mask ({label!r}): "
                f"{lonely_images[:_SHOW]}{more}"
            )
        if lonely_labels:
            more = "..." if len(lonely_labels) > _SHOW else ""
            problems.append(
                f"{len(lonely_labels)} mask(s) without an image ({image!r}): "
                f"{lonely_labels[:_SHOW]}{more}"
            )
        raise DataError(root, "unpaired files: " + "; ".join(problems))
    return [(c, images[c], labels[c]) for c in images]
