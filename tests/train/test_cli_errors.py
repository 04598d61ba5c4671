"""Every mistake gets one clear line: usage errors (exit 2), options that do not apply, absent
devices, bad data set-ups, damaged checkpoints and unexpected failures (exit 1); no traceback
unless --debug. Also --version and bare ``dsplug``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dsplug import __version__
from dsplug.cli import main
from dsplug.train import commands, load_checkpoint, save_checkpoint

from .conftest import TINY_CLI, run_cli, synthetic_cli


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        status = main(args)
    except SystemExit as exc:  # argparse
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith(f"dsplug {command}: error: "), lines[0]
    assert "Traceback" not in err and "usage:" not in err
    return lines[0]


def test_bare_dsplug_prints_help_and_exits_0(capsys) -> None:
    status, out, err = _run([], capsys)
    assert status == 0 and err == ""
    assert "usage: dsplug" in out and "train" in out and "predict" in out


def test_version(capsys) -> None:
    status, out, _ = _run(["--version"], capsys)
    assert status == 0
    assert out.startswith(f"dsplug {__version__}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--mode", "hybrid"], "argument --mode: invalid choice: 'hybrid'"),
        (["train", "--epochs", "0"], "expected an integer >= 1"),
        (["evaluate"], "the following arguments are required: checkpoint"),
        (["train", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["train", "--resume", "--overwrite"], "not allowed with argument"),
        # no silent abbreviations (the rest keeps a mistaken run short)
        (["train", "--ep", "1", "--min-epochs", "1", *TINY_CLI], "unrecognized arguments: --ep"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(args, message, capsys) -> None:
    status, _, err = _run(args, capsys)
    assert status == 2
    assert message in _one_error_line(err, args[0])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "32", "32"], "--size does not apply to --data synthetic"),
        (["--fit", "resize"], "--fit does not apply to --data synthetic"),
        (["--slice-range", "0", "5"], "--slice-range does not apply to --data synthetic"),
        (["--no-zscore", "--axis", "0"], "--axis, --no-zscore do not apply"),
        (["--encoder", "resnet18"], "--encoder applies to smp models"),
        (["--model", "smp-unet", "--depth", "3"], "--depth applies to dsplug's own nets"),
        (["--splits", "s.json", "--split-seed", "3"], "--split-seed chooses how cases are split"),
        (["--kind", "msd"], "synthetic phantoms read no folder"),
    ],
)
def test_options_that_do_not_apply_are_errors(extra, message, capsys, tmp_path: Path) -> None:
    out = tmp_path / "run"
    short = ["--epochs", "1", "--min-epochs", "1", "--quiet", "--no-plots"]  # if ignored
    status, _, err = _run(["train", *synthetic_cli(), *short, *extra, "--out", str(out)], capsys)
    assert status == 2
    assert message in _one_error_line(err, "train")
    assert not out.exists()


def test_2d_folder_data_refuses_3d_options(tmp_path: Path, capsys) -> None:
    (tmp_path / "data").mkdir()
    args = ["train", "--data", str(tmp_path / "data"), "--option", "image=i/{id}.png"]
    status, _, err = _run([*args, "--option", "mask=m/{id}.png", "--axis", "0"], capsys)
    assert status == 2
    assert "--axis applies to 3D volumes" in _one_error_line(err, "train")


@pytest.mark.parametrize("device", ["tpu", "cuda:99", "banana"])
def test_absent_or_unknown_device_is_one_line(device, capsys) -> None:
    if device == "cuda:99" and torch.cuda.device_count() > 99:  # pragma: no cover
        pytest.skip("a machine with 100 GPUs")
    status, _, err = _run(["train", "--device", device], capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    assert f"argument --device: {device!r}" in line and "has cpu" in line


def test_cuda_on_a_cpu_machine_is_one_line(capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    status, _, err = _run(["predict", "ckpt.pt", "x.nii.gz", "--device", "cuda"], capsys)
    assert status == 2
    assert "'cuda' is not present on this machine" in _one_error_line(err, "predict")


def test_folder_kind_without_templates_names_the_options(tmp_path: Path, capsys) -> None:
    args = ["train", "--data", str(tmp_path), "--kind", "folder", "--out", str(tmp_path / "r")]
    status, _, err = _run(args, capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    assert "--option image=" in line and "--option mask=" in line
    assert "__init__" not in line
    assert not (tmp_path / "r").exists()


def test_too_few_cases_advice_is_in_cli_flags(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", *synthetic_cli(num_cases=5), *TINY_CLI, "--out", str(out)]
    status, _, err = _run(args, capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    assert "5 cases are too few" in line
    assert "--splits" in line and "--contiguous" in line and "--option num_cases=" in line
    assert "contiguous_splits()" not in line and "a dict" not in line
    assert not out.exists()  # a failed start leaves no folder behind


def test_unexpected_failure_is_one_line_with_status_1_and_debug_shows_it(
    monkeypatch, capsys, tmp_path: Path
) -> None:
    def boom(args) -> int:
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    monkeypatch.setattr(commands, "compare_command", boom)
    status, _, err = _run(["compare", "a", "b"], capsys)
    assert status == 1
    line = _one_error_line(err, "compare")
    assert "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB" in line
    assert "--debug" in line
    with pytest.raises(RuntimeError, match="out of memory"):
        main(["compare", "a", "b", "--debug"])


def test_checkpoint_whose_config_does_not_match_its_weights(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train", *synthetic_cli(), *TINY_CLI, "--epochs", "1", "--min-epochs", "1"]
    assert main([*args, "--no-plots", "--out", str(run)]) == 0
    ckpt = load_checkpoint(run / "best.pt")
    ckpt["model_config"]["base_channels"] = 16  # the weights are of base 8
    save_checkpoint(ckpt, tmp_path / "edited.pt")
    capsys.readouterr()
    for command in (["evaluate"], ["predict"]):
        extra = ["x.png"] if command == ["predict"] else []
        if command == ["predict"]:
            (tmp_path / "x.png").write_bytes(b"")
            extra = [str(tmp_path / "x.png")]
        status, _, err = _run(
            [*command, str(tmp_path / "edited.pt"), *extra, "--out", str(tmp_path / "o")], capsys
        )
        assert status == 2
        line = _one_error_line(err, command[0])
        assert "edited.pt" in line and "does not fit the model its config describes" in line


def test_truncated_last_pt_points_at_resume_from(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train", *synthetic_cli(), *TINY_CLI, "--epochs", "1", "--min-epochs", "1"]
    assert main([*args, "--no-plots", "--out", str(run)]) == 0
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 3])
    capsys.readouterr()
    status, _, err = _run([*args, "--no-plots", "--out", str(run), "--resume"], capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    assert "truncated or corrupted" in line and "--resume-from" in line


def test_errors_through_python_m_dsplug_are_one_line() -> None:
    done = run_cli("train", "--device", "tpu")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("dsplug train: error: argument --device")
