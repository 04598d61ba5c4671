"""mkdocs hook: the results pages show the plots each study stores beside its JSON, in
benchmarks/<study>/results/.

The pages link them as ``../../benchmarks/<study>/results/NAME.png`` (right when the Markdown is
read in the repository); the site serves a copy as ``assets/results/<study>/NAME.png`` and the
links follow.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def on_files(files: Files, config: Any) -> Files:
    for png in sorted(BENCHMARKS.glob("*/results/*.png")):
        study = png.parent.parent.name
        uri = f"assets/results/{study}/{png.name}"
        files.append(File.generated(config, uri, abs_src_path=str(png)))
    return files


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    up = "../" * page.file.src_uri.count("/")
    link = re.compile(rf"\]\({re.escape(up)}\.\./benchmarks/(\w+)/results/")
    return link.sub(lambda m: f"]({up}assets/results/{m[1]}/", markdown)
