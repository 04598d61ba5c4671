"""mkdocs hook: the results pages show the plots stored beside their JSON in benchmarks/results/.

The pages link them as ``../../benchmarks/results/NAME.png`` (right when the Markdown is read
in the repository); the site serves a copy as ``assets/results/NAME.png`` and the links follow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

PLOTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def on_files(files: Files, config: Any) -> Files:
    for png in sorted(PLOTS.glob("*.png")):
        files.append(File.generated(config, f"assets/results/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    up = "../" * page.file.src_uri.count("/")
    return markdown.replace(f"]({up}../benchmarks/results/", f"]({up}assets/results/")
