"""The examples: importable, documented, and their command lines become valid `dsplug train`
options with each dataset's recipe (nothing is trained here)."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest

from dsplug.cli import build_parser as dsplug_parser
from dsplug.data import pair_files
from tests.data.conftest import require_data

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = ("brats", "cardiac", "spleen", "liver", "hippocampus", "isbi2012", "ph2")

# Each dataset's recipe as the issue and the paper (§4.1, §4.3, §4.8) state it.
RECIPES: dict[str, dict[str, object]] = {
    "brats": {"batch_size": 4, "weights": "brats", "slice_range": [30, 125], "kind": "brats"},
    "cardiac": {"batch_size": 2, "weights": "cardiac", "kind": "msd", "drop_empty": True},
    "spleen": {
        "batch_size": 1,
        "weights": "spleen",
        "kind": "msd",
        "fit": "resize",
        "size": [480, 480],
        "drop_empty": True,
    },
    "liver": {"weights": "liver", "kind": "msd", "fit": "resize", "size": [480, 480]},
    "hippocampus": {"kind": "msd", "size": [48, 64]},
    "isbi2012": {"kind": "folder", "contiguous": True},
    "ph2": {"kind": "folder", "fit": "resize"},
}


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_commands(doc: str, name: str) -> list[list[str]]:
    """The ``python examples/<name>.py ...`` commands of a docstring, as argument lists."""
    text = doc.replace("\\\n", " ")
    prefix = f"python examples/{name}.py"
    return [
        shlex.split(line.strip()[len(prefix) :])
        for line in text.splitlines()
        if line.strip().startswith(prefix)
    ]


def to_train_args(module: ModuleType, argv: list[str]):
    """Parse ``argv`` with the example, build its `dsplug train` line, parse that with the CLI."""
    args, rest = module.build_parser().parse_known_args(argv)
    line = module._common.train_argv(module.EXAMPLE, args, rest)
    return dsplug_parser().parse_args(["train", *line])


@pytest.mark.parametrize("name", NAMES)
def test_docstring_names_dataset_source_and_command(name: str) -> None:
    module = load_example(name)
    doc = module.__doc__
    assert "Dataset:" in doc and "http" in doc, "the docstring says what the data is and where"
    commands = run_commands(doc, name)
    assert commands, f"no 'python examples/{name}.py' command in the docstring"
    for argv in commands:
        assert "--data" in argv
        ns = to_train_args(module, argv)  # every documented command parses
        assert ns.data == argv[argv.index("--data") + 1]


@pytest.mark.parametrize("name", NAMES)
def test_help_exits_cleanly(name: str, capsys) -> None:
    parser = load_example(name).build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--data" in out and "--mode" in out


@pytest.mark.parametrize("name", NAMES)
def test_data_is_required(name: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        load_example(name).build_parser().parse_args([])
    assert exc.value.code == 2
    assert "--data" in capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES)
def test_typical_command_line_gives_the_recipe(name: str, tmp_path: Path) -> None:
    module = load_example(name)
    argv = ["--data", str(tmp_path), "--epochs", "3", "--mode", "rec", "--quiet", "--seed", "7"]
    ns = to_train_args(module, argv)
    assert (ns.data, ns.epochs, ns.mode, ns.seed, ns.quiet) == (str(tmp_path), 3, "rec", 7, True)
    assert ns.batch_size == module.EXAMPLE.batch_size
    assert ns.weights == module.EXAMPLE.weights
    for key, value in RECIPES[name].items():
        assert getattr(ns, key) == value, f"{name}: {key} is {getattr(ns, key)!r}"


def test_brats_uses_t1ce_only(tmp_path: Path) -> None:
    ns = to_train_args(load_example("brats"), ["--data", str(tmp_path)])
    assert ns.option == ['modalities=["t1ce"]']


def test_passthrough_options_override_the_recipe(tmp_path: Path) -> None:
    argv = ["--data", str(tmp_path), "--size", "256", "256", "--no-plots", "--depth", "4"]
    ns = to_train_args(load_example("spleen"), argv)
    assert ns.size == [256, 256] and ns.no_plots and ns.depth == 4
    assert ns.fit == "resize"  # the rest of the recipe stays


def test_main_hands_over_to_dsplug_train(monkeypatch, tmp_path: Path, capsys) -> None:
    module = load_example("cardiac")
    seen: list[list[str]] = []
    monkeypatch.setattr(module._common, "dsplug_main", lambda argv: seen.append(argv) or 0)
    assert module.main(["--data", str(tmp_path), "--batch-size", "3"]) == 0
    assert seen and seen[0][0] == "train"
    ns = dsplug_parser().parse_args(seen[0])
    assert (ns.batch_size, ns.weights, ns.drop_empty) == (3, "cardiac", True)
    assert "dsplug train" in capsys.readouterr().out


def test_main_reports_bad_options_through_the_cli(tmp_path: Path, capsys) -> None:
    module = load_example("hippocampus")
    with pytest.raises(SystemExit) as exc:  # an unknown option reaches dsplug train's parser
        module.main(["--data", str(tmp_path), "--no-such-option"])
    assert exc.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err


def _template(module: ModuleType, key: str) -> str:
    fixed = list(module.EXAMPLE.fixed)
    options = [fixed[i + 1] for i, item in enumerate(fixed) if item == "--option"]
    return next(o.split("=", 1)[1] for o in options if o.startswith(f"{key}="))


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "folder", "cases"),
    [("isbi2012", ("isbi2012_em_membrane", "train"), 30), ("ph2", ("PH2_subset40",), 40)],
)
def test_folder_templates_pair_the_shared_data(name: str, folder: tuple[str, ...], cases: int):
    root = require_data(*folder)
    module = load_example(name)
    pairs = pair_files(root, _template(module, "image"), _template(module, "mask"))
    ids = {case for case, _, _ in pairs}
    if name == "ph2":  # one case per folder under images/
        expected = {d.name for d in (root / "images").iterdir() if d.is_dir()}
    else:  # image/0.png ... image/29.png
        expected = {p.stem for p in (root / "image").glob("*.png")}
    assert len(pairs) == cases and ids == expected


def test_examples_do_not_leak_sys_path() -> None:
    before = list(sys.path)
    load_example("liver")
    load_example("liver")
    added = [p for p in sys.path if p not in before]
    assert added in ([], [str(EXAMPLES)])
    assert sys.path.count(str(EXAMPLES)) == 1
