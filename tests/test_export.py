"""dsplug.export: safetensors with rebuild metadata, ONNX, from a model, a wrapper or a
Trainer checkpoint."""

import json

import pytest
import torch

from dsplug import DeepSupervised
from dsplug.export import export_checkpoint, export_model, load_exported
from tests.helpers import make_batch, make_net

smp = pytest.importorskip("segmentation_models_pytorch")


def _trained(model, label_mode="multiclass", classes=2):
    ds = DeepSupervised(model, "hyb", aux_every=1)  # every call runs the branches
    x, y = make_batch(label_mode, classes, in_channels=ds._adapter.in_channels, size=64)
    opt = torch.optim.SGD(ds.parameters(), lr=0.1)
    ds.loss(ds(x, y), y).total.backward()
    opt.step()
    return ds, x


@pytest.mark.parametrize(
    "build",
    [
        lambda: make_net("unet", classes=2),
        lambda: smp.Unet("tu-test_resnet", encoder_weights=None, in_channels=1, classes=2),
    ],
    ids=["own-unet", "smp-unet"],
)
def test_safetensors_holds_the_bare_weights_and_rebuilds_the_model(build, tmp_path):
    from safetensors import safe_open

    ds, x = _trained(build())
    path = export_model(ds, tmp_path / "sub" / "model.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert sorted(f.keys()) == sorted(ds.model.state_dict())
        meta = f.metadata()
    assert meta["format"] == "dsplug-model"
    assert json.loads(meta["model_config"])["arch"] in ("unet", "smp-unet")
    rebuilt = load_exported(path)
    assert type(rebuilt) is type(ds.model)
    for key, value in ds.model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    ds.eval()
    torch.testing.assert_close(rebuilt(x), ds(x))
    assert ds.training is False and not any(m._forward_hooks for m in ds.model.modules())


def test_export_leaves_the_wrapper_training(tmp_path):
    ds, x = _trained(make_net("unet", classes=2))
    assert ds.training
    export_model(ds, tmp_path / "m.safetensors")
    assert ds.training and any(m._forward_hooks for m in ds.model.modules())
    out = ds(x, torch.zeros(2, 64, 64, dtype=torch.long))
    assert out.rec_image is not None


def test_a_model_without_a_known_config_exports_weights_only(tmp_path):
    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3)

    path = export_model(Custom(), tmp_path / "c.safetensors")
    with pytest.raises(ValueError, match=r"without a model config.*load_state_dict"):
        load_exported(path)
    export_model(Custom(), tmp_path / "d.safetensors", config={"arch": "unet", "in_channels": 1})
    with pytest.raises(ValueError, match="Unknown export format 'pt'"):
        export_model(Custom(), tmp_path / "e.pt", "pt")


def test_onnx_export_of_a_wrapped_model(tmp_path):
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    ds, _ = _trained(make_net("unet", classes=2))
    path = export_model(ds, tmp_path / "unet.onnx", "onnx")
    onnx.checker.check_model(str(path))
    graph = onnx.load(str(path)).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 1, 8, 8]


def test_export_checkpoint_reads_a_trainer_checkpoint(tmp_path):
    from dsplug.train.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, save_checkpoint

    ds, x = _trained(make_net("unet", classes=2))
    ckpt = tmp_path / "run.pt"
    minimal = {  # the keys a Trainer checkpoint must have
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "epoch": 1,
        "model_config": {"arch": "unet", **ds.model.config()},
        "model_state": ds.model.state_dict(),
    }
    save_checkpoint(minimal, ckpt)
    path = export_checkpoint(ckpt, tmp_path / "out.safetensors", "safetensors")
    rebuilt = load_exported(path)
    ds.eval()
    torch.testing.assert_close(rebuilt(x), ds(x))
