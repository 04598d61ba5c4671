"""The examples: importable, documented, their command lines become valid `dsplug train`
options with each dataset's recipe, and each one trains end to end on tiny settings (the real
data in ../shared/data where there is a copy, a tiny synthetic MSD task where there is not)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from dsplug import LossWeights
from dsplug.cli import build_parser as dsplug_parser
from dsplug.data import LabelRule, pair_files
from tests.data.conftest import require_data
from tests.train.conftest import write_msd

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = (
    "brats",
    "cardiac",
    "spleen",
    "liver",
    "hippocampus",
    "isbi2012",
    "ph2",
    "isbi2012_patches",
    "hippocampus3d",
)

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
    "isbi2012_patches": {
        "kind": "folder",
        "contiguous": True,
        "patch": [128, 128],
        "patches_per_image": 8,
        "augment": True,
        "fit": None,
    },
    "hippocampus3d": {"kind": "msd", "patch": [32, 32, 32], "augment": True, "depth": 4},
}
# The examples with --quick: what it sets (a CPU run of about a minute).
QUICK: dict[str, dict[str, object]] = {
    "isbi2012_patches": {"patch": [64, 64], "base_channels": 8, "epochs": 2, "depth": 3},
    "hippocampus3d": {"patch": [16, 16, 16], "base_channels": 4, "epochs": 1, "depth": 3},
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


@pytest.mark.parametrize("name", sorted(QUICK))
def test_quick_gives_small_settings_that_options_still_override(name: str, tmp_path: Path):
    module = load_example(name)
    ns = to_train_args(module, ["--data", str(tmp_path), "--quick"])
    for key, value in QUICK[name].items():
        assert getattr(ns, key) == value, f"{name} --quick: {key} is {getattr(ns, key)!r}"
    ns = to_train_args(module, ["--data", str(tmp_path), "--quick", "--epochs", "5"])
    assert ns.epochs == 5  # given on the command line: wins over --quick
    plain = to_train_args(module, ["--data", str(tmp_path)])
    assert plain.patch == RECIPES[name]["patch"]


@pytest.mark.parametrize("name", sorted(QUICK))
@pytest.mark.parametrize("quick", [False, True])
def test_printed_command_names_each_option_once(
    name: str, quick: bool, monkeypatch, tmp_path: Path, capsys
) -> None:
    module = load_example(name)
    monkeypatch.setattr(module._common, "dsplug_main", lambda argv: 0)
    assert module.main(["--data", str(tmp_path), *(["--quick"] if quick else [])]) == 0
    printed = shlex.split(capsys.readouterr().out.strip())  # the shell reads it as printed
    assert printed[:2] == ["dsplug", "train"]
    flags = [a for a in printed if a.startswith("--") and a != "--option"]
    repeated = sorted({f for f in flags if flags.count(f) > 1})
    assert not repeated, f"repeated: {repeated}"
    ns = dsplug_parser().parse_args(printed[1:])
    if quick:
        for key, value in QUICK[name].items():
            assert getattr(ns, key) == value


def test_isbi2012_patches_trains_the_membranes(tmp_path: Path) -> None:
    """The masks hold 255 (cell) and 0 (membrane); the docstring and the README say membranes,
    as benchmarks/native/isbi_patches.py trains them."""
    module = load_example("isbi2012_patches")
    assert "membranes" in module.__doc__.split("\n\n")[0]
    ns = to_train_args(module, ["--data", str(tmp_path)])
    labels = [o.split("=", 1)[1] for o in ns.option if o.startswith("labels=")]
    assert len(labels) == 1, ns.option
    rule = LabelRule.parse(json.loads(labels[0]))
    mask = rule.apply(np.array([[0, 255], [255, 255]], dtype=np.uint8), "label/0.png")
    assert mask.tolist() == [[1, 0], [0, 0]]  # membrane (0) -> foreground


def test_only_examples_with_quick_settings_take_quick(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        load_example("cardiac").build_parser().parse_args(["--data", "x", "--quick"])


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


# --- end to end: each example trains for one epoch on tiny settings --------------------------

# One epoch of a width-4, two-level U-Net; nothing but the run folder's files is written.
TINY = [
    *("--epochs", "1", "--min-epochs", "1", "--base-channels", "4", "--depth", "2"),
    *("--quiet", "--no-tensorboard", "--no-plots", "--no-cache"),
]


def _link(src: Path, dst: Path) -> None:
    """Symlink the file ``src`` at ``dst`` (the real data is read, never copied)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def _splits(root: Path, train: list[str], val: str, test: str) -> Path:
    path = root.parent / f"{root.name}_splits.json"
    path.write_text(json.dumps({"train": train, "val": [val], "test": [test]}))
    return path


def _hippocampus(tmp: Path) -> tuple[Path, list[str]]:
    """4 of the 200 real cases (2 / 1 / 1), 10 slices each, at the recipe's 48 x 64."""
    source = require_data("Task04_Hippocampus")
    meta = json.loads((source / "dataset.json").read_text())
    root = tmp / "Task04_Hippocampus"
    meta["training"] = meta["training"][:4]
    for entry in meta["training"]:
        for key in ("image", "label"):
            _link(source / entry[key], root / entry[key])
    (root / "dataset.json").write_text(json.dumps(meta))
    ids = [Path(e["image"]).name.removesuffix(".nii.gz") for e in meta["training"]]
    splits = _splits(root, ids[:2], ids[2], ids[3])
    return root, ["--splits", str(splits), "--slice-range", "12", "22"]


def _hippocampus3d(tmp: Path) -> tuple[Path, list[str]]:
    """4 of the 200 real cases (2 / 1 / 1) as whole volumes, 16^3 patches, one per volume."""
    root, _ = _hippocampus(tmp)
    splits = root.parent / f"{root.name}_splits.json"
    quick = ["--quick", "--patch", "16", "16", "16", "--patches-per-image", "1"]
    return root, ["--splits", str(splits), *quick]


def _brats(tmp: Path) -> tuple[Path, list[str]]:
    """3 of the 4 real cases (1 / 1 / 1), 4 slices each, resized to 32 x 32."""
    source = require_data("brats2015")
    root = tmp / "brats2015"
    cases = sorted(p.parent for p in source.glob("*/*/OTMultiClass.nii.gz"))[:3]
    assert len(cases) == 3, f"expected BraTS case folders under {source}"
    for case in cases:
        for file in case.glob("*.nii.gz"):
            _link(file, root / case.relative_to(source) / file.name)
    ids = [case.name for case in cases]
    splits = _splits(root, ids[:1], ids[1], ids[2])
    return root, ["--splits", str(splits), "--slice-range", "70", "74", "--fit", "resize",
                  "--size", "32", "32"]  # fmt: skip


def _isbi2012(tmp: Path) -> tuple[Path, list[str]]:
    """The real 30-slice stack (contiguous 21 / 3 / 6), resized to 64 x 64."""
    return require_data("isbi2012_em_membrane", "train"), ["--fit", "resize", "--size", "64", "64"]


def _isbi2012_patches(tmp: Path) -> tuple[Path, list[str]]:
    """The real 30-slice stack at its 512 x 512: one 64 x 64 patch per slice, windows of 64."""
    data = require_data("isbi2012_em_membrane", "train")
    return data, ["--quick", "--patch", "64", "64", "--patches-per-image", "1"]


def _ph2(tmp: Path) -> tuple[Path, list[str]]:
    """The real 40 cases (random 28 / 4 / 8), resized to 64 x 64 instead of 288 x 384."""
    return require_data("PH2_subset40"), ["--size", "64", "64"]


def _synthetic_msd(*size: str) -> Callable[[Path], tuple[Path, list[str]]]:
    """No copy of this task in ../shared/data: a tiny MSD task (4 volumes of 20 x 24 x 6)."""

    def build(tmp: Path) -> tuple[Path, list[str]]:
        root = write_msd(tmp / "Task99_Tiny")
        return root, ["--splits", str(root / "splits.json"), *(("--size", *size) if size else ())]

    return build


# name -> (its data and the options that keep it tiny, marks).
E2E: dict[str, tuple[Callable[[Path], tuple[Path, list[str]]], tuple]] = {
    "hippocampus": (_hippocampus, (pytest.mark.data,)),
    "brats": (_brats, (pytest.mark.data, pytest.mark.slow)),
    "isbi2012": (_isbi2012, (pytest.mark.data,)),
    "ph2": (_ph2, (pytest.mark.data, pytest.mark.slow)),
    "isbi2012_patches": (_isbi2012_patches, (pytest.mark.data,)),
    "hippocampus3d": (_hippocampus3d, (pytest.mark.data,)),
    "cardiac": (_synthetic_msd(), ()),
    "spleen": (_synthetic_msd("32", "32"), ()),
    "liver": (_synthetic_msd("32", "32"), ()),
}
assert sorted(E2E) == sorted(NAMES)


def _check_run(module: ModuleType, argv: list[str]) -> None:
    """The run folder holds a finished run made with what the command line asked for (the
    example's recipe, as `test_typical_command_line_gives_the_recipe` checks, plus the
    pass-through options)."""
    ns = to_train_args(module, argv)
    run = Path(ns.out)
    files = ["best.pt", "last.pt", "log.csv", "summary.json", "config.json", "test_cases.csv"]
    if ns.splits is None:  # the run wrote the split it made
        files.append("splits.json")
    for file in files:
        assert (run / file).is_file(), f"no {file} in {sorted(os.listdir(run))}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["mode"] == ns.mode and summary["efficiency"]["epochs_run"] == 1
    for split in ("best_val", "test"):
        # HD95 / NSD (patch runs) are nan where no class has a boundary to measure (MONAI)
        plain = {k: v for k, v in summary[split].items() if k not in ("hd95", "nsd")}
        assert all(math.isfinite(v) for v in plain.values()), summary[split]
        assert 0.0 <= summary[split]["dice"] <= 1.0
    if ns.patch:  # scored at native resolution, with the surface metrics
        assert config_patch(run) == ns.patch
        assert {"hd95", "nsd", "hd95_nan", "nsd_nan"} <= set(summary["test"])
    config = json.loads((run / "config.json").read_text())
    train_config = config["train_config"]
    assert (train_config["batch_size"], train_config["max_epochs"]) == (ns.batch_size, 1)
    assert config["model_config"]["base_channels"] == ns.base_channels == 4
    expected = LossWeights.preset(module.EXAMPLE.weights).to_dict()
    assert ns.weights == module.EXAMPLE.weights
    assert config["wrapper_config"]["weights"] == expected
    train = config["data_config"]["train"]
    assert (train["kind"], Path(train["root"])) == (ns.kind, Path(ns.data))
    prep = train["preprocessing"]
    assert prep["drop_empty"] == ns.drop_empty
    assert prep["fit"] == (ns.fit or "pad")
    assert prep["slice_range"] == ns.slice_range
    if ns.size is not None:
        assert prep["size"] == ns.size


def config_patch(run: Path) -> list[int] | None:
    """The patch a run recorded in its config (None: trained on whole slices)."""
    return json.loads((run / "config.json").read_text())["train_config"]["patch"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=marks) for n, (_, marks) in E2E.items()])
def test_example_trains_end_to_end(name: str, tmp_path: Path, capsys) -> None:
    module = load_example(name)
    data, extra = E2E[name][0](tmp_path / "data")
    run = tmp_path / "run"
    argv = ["--data", str(data), "--out", str(run), *TINY, *extra]
    assert module.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.startswith("dsplug train ") and f"run folder: {run}" in out
    _check_run(module, argv)


@pytest.mark.slow
def test_example_script_runs_as_a_program(tmp_path: Path) -> None:
    """``python examples/cardiac.py ...``: the script itself, in a fresh interpreter."""
    data = write_msd(tmp_path / "Task99_Tiny")
    run = tmp_path / "run"
    argv = ["--data", str(data), "--out", str(run), "--splits", str(data / "splits.json"), *TINY]
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "cardiac.py"), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    _check_run(load_example("cardiac"), argv)
