"""``dsplug train --aux-every K`` (issue 28): hyb's default 2 is recorded in the run's config, a
resume keeps the run's value (a hyb run without it ran the branches on every step), and a bad
value is one error line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsplug.cli import main
from dsplug.train import load_checkpoint

from .conftest import TINY_CLI, synthetic_cli

TRAIN = ["train", *synthetic_cli(), *TINY_CLI, "--no-plots", "--min-epochs", "1"]


def test_default_is_recorded_and_a_resume_keeps_the_runs_aux_every(tmp_path: Path, capsys) -> None:
    new, paper = tmp_path / "new", tmp_path / "paper"
    assert main([*TRAIN, "--epochs", "1", "--out", str(new)]) == 0
    assert "aux_every 2" in capsys.readouterr().out
    assert load_checkpoint(new / "last.pt")["wrapper_config"]["aux_every"] == 2
    # --aux-every 1 writes the config of a hyb run from before the default (no aux_every key)
    assert main([*TRAIN, "--epochs", "1", "--aux-every", "1", "--out", str(paper)]) == 0
    assert "aux_every" not in load_checkpoint(paper / "last.pt")["wrapper_config"]
    capsys.readouterr()
    for run in (new, paper):
        assert main([*TRAIN, "--epochs", "2", "--out", str(run), "--resume"]) == 0, run
        assert load_checkpoint(run / "last.pt")["epoch"] == 2
    assert "aux_every 1" in capsys.readouterr().out.split("dsplug train: model")[-1]
    assert "aux_every" not in load_checkpoint(paper / "last.pt")["wrapper_config"]


def test_aux_every_errors_are_one_line(tmp_path: Path, capsys) -> None:
    out = ["--epochs", "1", "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as exit_:  # argparse's own error line
        main([*TRAIN, *out, "--aux-every", "0"])
    assert exit_.value.code == 2
    assert main([*TRAIN, *out, "--aux-every", "2", "--mode", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err
    assert "--aux-every" in err[0] and "expected an integer >= 1" in err[0]
    assert "aux_every" in err[1] and "'none'" in err[1]
    assert not (tmp_path / "r").exists()
