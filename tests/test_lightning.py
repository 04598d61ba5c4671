"""dsplug.lightning: fit, validate, checkpoint reload and predict on tiny data (CPU)."""

import subprocess
import sys

import pytest
import torch

pl = pytest.importorskip("pytorch_lightning")

from dsplug.lightning import DeepSupervisedModule  # noqa: E402
from tests.helpers import make_net  # noqa: E402

# The Lightning example of docs/getting-started.md, verbatim (it runs as written here).
README_LIGHTNING = """
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from dsplug import UNet
from dsplug.lightning import DeepSupervisedModule

images, masks = torch.randn(6, 1, 32, 32), (torch.rand(6, 1, 32, 32) > 0.5).float()
train_loader = DataLoader(TensorDataset(images, masks), batch_size=4)  # last batch: 2
val_loader = DataLoader(TensorDataset(images, masks), batch_size=4)

model = UNet(in_channels=1, classes=1, base_channels=8, depth=3)
module = DeepSupervisedModule(model, mode="hyb", lr=1e-3)
trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False)
trainer.fit(module, train_loader, val_loader)
model = module.ds.strip()  # the trained bare model
"""


def _loaders(n=6, size=32, batch=4):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, size, size, generator=gen)
    y = torch.randint(0, 3, (n, size, size), generator=gen)
    data = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(data, batch_size=batch), x


def test_readme_lightning_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(README_LIGHTNING, namespace)
    assert namespace["trainer"].current_epoch == 2
    assert not any(m._forward_hooks for m in namespace["model"].modules())


def test_fit_validate_reload_and_predict(tmp_path):
    torch.manual_seed(0)
    loader, x = _loaders()
    module = DeepSupervisedModule(make_net("unet", classes=3), mode="hyb", lr=1e-2)
    assert module.ds.label_mode == "multiclass"
    before = {k: v.clone() for k, v in module.ds.state_dict().items()}
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=pl.loggers.CSVLogger(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader, loader)
    assert trainer.current_epoch == 2
    own = [k for k in before if not k.startswith("model.") and "balance" not in k]
    moved = [k for k in own if not torch.equal(before[k], module.ds.state_dict()[k])]
    assert moved, "the wrapper's own parameters did not train"
    logged = trainer.logged_metrics
    assert {"train/loss", "val/loss", "train/image", "val/image"} <= set(logged), sorted(logged)

    [result] = trainer.validate(module, loader, verbose=False)
    assert torch.isfinite(torch.tensor(result["val/loss"]))

    ckpt = trainer.checkpoint_callback.best_model_path
    reloaded = DeepSupervisedModule.load_from_checkpoint(ckpt, model=make_net("unet", classes=3))
    assert reloaded.hparams.mode == "hyb"
    for key, value in module.ds.state_dict().items():
        assert torch.equal(reloaded.ds.state_dict()[key], value), key

    predictions = trainer.predict(reloaded, loader)
    assert [p.shape for p in predictions] == [(4, 3, 32, 32), (2, 3, 32, 32)]
    module.eval()
    torch.testing.assert_close(torch.cat(predictions), module(x))


def test_import_dsplug_does_not_import_lightning():
    code = "import sys, dsplug; print('pytorch_lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_checkpoints_keep_their_aux_every(tmp_path):
    """hyb's default ``aux_every`` 2 is saved; a checkpoint without it (saved before the
    option) ran the branches on every step and reloads with 1, unless one is given."""
    module = DeepSupervisedModule(make_net("unet"), mode="hyb")
    assert module.ds.aux_every == 2 and module.hparams.aux_every == 2
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": pl.__version__,
    }
    torch.save(ckpt, tmp_path / "new.ckpt")
    del ckpt["hyper_parameters"]["aux_every"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    load = DeepSupervisedModule.load_from_checkpoint
    assert load(tmp_path / "new.ckpt", model=make_net("unet")).ds.aux_every == 2
    old = load(tmp_path / "old.ckpt", model=make_net("unet"))
    assert old.ds.aux_every == 1 and old.hparams.aux_every == 1
    assert load(tmp_path / "old.ckpt", model=make_net("unet"), aux_every=3).ds.aux_every == 3
