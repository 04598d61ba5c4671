"""CPU threads of ``dsplug train / evaluate / predict``: ``--threads N``, and a default that
leaves the cores other jobs already use to them (no oversubscription)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsplug.cli import build_parser, main
from dsplug.train import threads as threads_module
from dsplug.train.threads import default_threads, set_threads, usable_cpus

QUIET = ["--quiet", "--no-tensorboard", "--no-plots", "--epochs", "1", "--min-epochs", "1"]
TINY = ["--base-channels", "4", "--depth", "3", *QUIET]
SYNTH = ["--data", "synthetic", "--option", "num_cases=10", "--option", "size=48"]


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Each test leaves torch's thread count as it found it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def machine(monkeypatch, tmp_path: Path):
    """A fake machine: ``machine(cpus, load)``; no OMP_NUM_THREADS, torchrun or cgroup quota."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(threads_module, "_CPU_MAX", tmp_path / "absent")
    monkeypatch.setattr(threads_module, "_LOADAVG", tmp_path / "absent")

    def make(cpus: int, load: float) -> None:
        monkeypatch.setattr(threads_module.os, "sched_getaffinity", lambda pid: set(range(cpus)))
        monkeypatch.setattr(threads_module.os, "getloadavg", lambda: (load, load, load))

    return make


@pytest.mark.parametrize(
    ("cpus", "load", "expected"),
    [(16, 0.05, 16), (16, 3.4, 13), (2, 1.0, 1), (2, 5.2, 1), (8, 0.6, 7)],
)
def test_default_threads_are_the_free_cpus(machine, cpus, load, expected) -> None:
    machine(cpus, load)
    assert default_threads() == expected


def test_default_threads_share_the_cpus_between_torchrun_processes(machine, monkeypatch) -> None:
    machine(16, 0.0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_threads() == 4


def test_omp_num_threads_is_the_users_choice(machine, monkeypatch) -> None:
    machine(16, 9.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert default_threads() == 6


def test_tasks_running_now_count_before_the_load_average_shows_them(
    machine, tmp_path: Path, monkeypatch
) -> None:
    machine(8, 0.2)  # a training started seconds ago: not yet in the 1-minute average
    snapshot = tmp_path / "loadavg"
    snapshot.write_text("0.20 0.10 0.05 4/512 1234\n")  # 3 running besides this process
    monkeypatch.setattr(threads_module, "_LOADAVG", snapshot)
    assert default_threads() == 5


def test_a_cgroup_quota_caps_the_cpus(machine, tmp_path: Path, monkeypatch) -> None:
    machine(64, 0.0)
    quota = tmp_path / "cpu.max"
    quota.write_text("250000 100000\n")  # 2.5 CPUs
    monkeypatch.setattr(threads_module, "_CPU_MAX", quota)
    assert usable_cpus() == 3 and default_threads() == 3
    quota.write_text("max 100000\n")
    assert usable_cpus() == 64


def test_set_threads_sets_torch_and_returns_the_count(machine) -> None:
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    machine(3, 1.0)
    assert set_threads() == 2 and torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="threads must be an integer >= 1, got 0"):
        set_threads(0)


@pytest.mark.parametrize("command", [["train"], ["evaluate", "x.pt"], ["predict", "x.pt", "a"]])
def test_threads_option_of_each_command(command) -> None:
    parser = build_parser()
    assert parser.parse_args([*command, "--threads", "3"]).threads == 3
    assert parser.parse_args(command).threads is None


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_threads_value_is_one_line(value, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "x.pt", "--threads", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"argument --threads: expected an integer >= 1, got '{value}'" in err


def test_train_and_evaluate_print_and_record_their_threads(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    patch = ["--patch", "32", "32", "--patches-per-image", "1", "--recipe", "paper"]
    argv = ["train", *SYNTH, *patch, *TINY]
    assert main([*argv, "--threads", "1", "--out", str(run)]) == 0
    assert "1 CPU thread(s)" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["threads"] == 1
    out = tmp_path / "eval"
    assert main(["evaluate", str(run / "best.pt"), "--out", str(out), "--threads", "1"]) == 0
    assert "dsplug evaluate: device cpu, 1 CPU thread(s)" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threads"] == 1 and summary["seconds"] > 0
