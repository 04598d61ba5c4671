"""``import dsplug`` loads torch and the core only; the training stack loads when used."""

import subprocess
import sys

HEAVY = ("matplotlib", "scipy", "pandas", "tensorboard", "pytorch_lightning", "tqdm")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_import_dsplug_loads_no_training_stack() -> None:
    by_torch = _loaded_after("import torch")  # torch 2.14 itself imports tqdm
    loaded = _loaded_after("import dsplug; dsplug.DeepSupervised, dsplug.UNet")
    assert [m for m in HEAVY if m in loaded and m not in by_torch] == []


def test_trainer_loads_on_first_use() -> None:
    loaded = _loaded_after("import dsplug; dsplug.Trainer")
    assert "matplotlib" in loaded or "scipy" in loaded  # the training stack did load
