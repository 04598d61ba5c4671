"""smp's own model tests with every model they build wrapped in ``DeepSupervised(model, mode)``.

Does the wrapper stand in for the model? smp's ``tests/models`` are run twice, as they are and
with each model they build (``smp.create_model`` and the architecture classes) replaced by
``DeepSupervised(model, mode="hyb")``; the tests that pass unwrapped are compared with those
that pass wrapped. Architectures dsplug has no adapter for are left bare in the wrapped run
and reported apart. Offline: encoders are built with ``encoder_weights=None`` in both runs,
hub-download tests are smp's slow ones (skipped), and GitPython is stubbed (smp's diff check
then runs every test).

Usage:
    python benchmarks/models/smp_model_tests.py SOURCE [--rev REV] [--mode hyb] [--out result.json]

SOURCE is a checkout of segmentation_models.pytorch or its git directory (read at ``--rev``).
The tests are copied to a temporary folder, never into this repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["SUPPORTED_ARCHS", "main", "run_suite"]

SUPPORTED_ARCHS = ("unet", "unetplusplus", "fpn", "linknet", "manet")
_FILES = ("tests/__init__.py", "tests/utils.py", "tests/conftest.py", "tests/models")

_PATCH = """

# --- added by dsplug's benchmarks/models/smp_model_tests.py --------------------------------------
import functools as _functools
import os as _os

import segmentation_models_pytorch as _smp

import dsplug.adapters.smp  # noqa: F401  (registers the real classes before they are shadowed)

_WRAP_MODE = _os.environ.get("DSPLUG_WRAP", "")


def _wrap(model):
    if not _WRAP_MODE:
        return model
    from dsplug import DeepSupervised
    from dsplug.adapters import UnsupportedModelError

    try:
        return DeepSupervised(model, mode=_WRAP_MODE)
    except UnsupportedModelError:
        return model


def _offline_create_model(*args, **kwargs):
    kwargs["encoder_weights"] = None
    return _wrap(_ORIGINAL_CREATE(*args, **kwargs))


def _wrapping(cls):
    @_functools.wraps(cls)
    def build(*args, **kwargs):
        kwargs["encoder_weights"] = None
        return _wrap(cls(*args, **kwargs))

    build.from_pretrained = cls.from_pretrained  # smp.from_pretrained looks classes up here
    return build


_ORIGINAL_CREATE = _smp.create_model
_smp.create_model = _offline_create_model
for _cls in set(_smp.MODEL_ARCHITECTURES_MAPPING.values()):
    setattr(_smp, _cls.__name__, _wrapping(_cls))
"""


def _copy_tests(source: Path, rev: str, dest: Path) -> None:
    if (source / "tests" / "models").is_dir():
        for name in _FILES:
            src = source / name
            if src.is_dir():
                shutil.copytree(src, dest / name)
            else:
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dest / name)
        return
    archive = subprocess.run(
        ["git", f"--git-dir={source}", "archive", rev, *_FILES],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _prepare(source: Path, rev: str, dest: Path) -> None:
    _copy_tests(source, rev, dest)
    with open(dest / "tests" / "conftest.py", "a") as f:
        f.write(_PATCH)
    # smp's utils import GitPython for its "run on diff" check; without a repository every
    # test runs, which is what a stub that fails gives.
    (dest / "git.py").write_text(
        "class Repo:\n    def __init__(self, *args, **kwargs):\n"
        "        raise RuntimeError('no repository')\n"
    )


def run_suite(
    workdir: Path, wrap_mode: str, timeout: int, archs: tuple[str, ...]
) -> dict[str, dict[str, str]]:
    """Run smp's model tests of ``archs`` (all when empty) in ``workdir``;
    ``{test id: {"outcome", "message"}}``."""
    files = [f"tests/models/test_{a}.py" for a in archs] or ["tests/models"]
    report = workdir / f"junit-{wrap_mode or 'bare'}.xml"
    env = {**os.environ, "DSPLUG_WRAP": wrap_mode, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(workdir), env.get("PYTHONPATH", "")])
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *files,
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            "-o",
            "addopts=",
            "--timeout",
            str(timeout),
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        check=False,
    )
    results: dict[str, dict[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                message = (
                    (node.get("message") or "").splitlines()[0][:300] if node.get("message") else ""
                )
                break
        results[name] = {"outcome": outcome, "message": message}
    return results


def _arch(test_id: str) -> str:
    module = test_id.split("::")[0].rsplit(".", 2)[-2]
    return module.removeprefix("test_")


def summarise(bare: dict, wrapped: dict) -> dict[str, object]:
    """Counts over the tests that pass unwrapped, overall and for the supported archs."""
    passing = sorted(t for t, r in bare.items() if r["outcome"] == "passed")
    supported = [t for t in passing if _arch(t) in SUPPORTED_ARCHS]
    still = [t for t in passing if wrapped.get(t, {}).get("outcome") == "passed"]
    lost = {t: wrapped.get(t, {"message": "not run"})["message"] for t in passing if t not in still}
    return {
        "pass_unwrapped": len(passing),
        "pass_wrapped": len(still),
        "supported_pass_unwrapped": len(supported),
        "supported_pass_wrapped": len([t for t in supported if t in still]),
        "failing_wrapped": lost,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="smp checkout or git directory")
    parser.add_argument("--rev", default="HEAD", help="revision when SOURCE is a git dir")
    parser.add_argument("--mode", default="hyb", help="the DeepSupervised mode to wrap with")
    parser.add_argument("--timeout", type=int, default=600, help="per-test timeout (s)")
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    parser.add_argument(
        "--all-archs",
        action="store_true",
        help="also run the architectures dsplug has no adapter for (left bare when wrapped)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smp-tests-") as tmp:
        workdir = Path(tmp)
        _prepare(args.source, args.rev, workdir)
        archs = () if args.all_archs else SUPPORTED_ARCHS
        bare = run_suite(workdir, "", args.timeout, archs)
        wrapped = run_suite(workdir, args.mode, args.timeout, archs)
    summary = {"mode": args.mode, **summarise(bare, wrapped)}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
