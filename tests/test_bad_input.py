"""Every bad input gets a clear error naming what was received and what was expected."""

import pytest
import torch

from dsplug import DeepSupervised
from dsplug._checks import ShapeError
from dsplug.adapters import UnsupportedModelError
from tests.helpers import make_batch, make_net


def _ds(mode="hyb", label_mode="binary", classes=1):
    return DeepSupervised(make_net("unet", classes=classes), mode, label_mode=label_mode)


def test_image_mask_shape_mismatch():
    x, _ = make_batch("binary", 1)
    y = torch.zeros(2, 1, 16, 16)
    with pytest.raises(ShapeError, match=r"\(2, 1, 16, 16\).*expected \(2, 1, 32, 32\)"):
        _ds()(x, y)


def test_wrong_channel_count():
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ShapeError, match=r"\(2, 3, 32, 32\).*expects \(B, 1, S, S\)"):
        _ds()(x, torch.zeros(2, 1, 32, 32))


def test_non_binary_mask_in_binary_mode():
    x, y = make_batch("binary", 1)
    y[0, 0, 0, 0] = 2.0
    with pytest.raises(ValueError, match=r"only 0 and 1, got values \[0.0, 1.0, 2.0\]"):
        _ds()(x, y)


def test_class_index_out_of_range():
    x, y = make_batch("multiclass", 3)
    y[0, 0, 0] = 3
    with pytest.raises(ValueError, match=r"indices in \[0, 3\], expected \[0, 3\)"):
        _ds(label_mode="multiclass", classes=3)(x, y)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input(bad):
    x, y = make_batch("binary", 1)
    x[1, 0, 3, 3] = bad
    with pytest.raises(ValueError, match="image batch contains non-finite values"):
        _ds()(x, y)


def test_indivisible_spatial_size():
    x, y = torch.randn(2, 1, 30, 32), torch.zeros(2, 1, 30, 32)
    with pytest.raises(ShapeError, match=r"\(30, 32\).*divisible by 4.*\(32, 32\)"):
        _ds()(x, y)


def test_unknown_mode_preset_and_weight_name():
    net = make_net("unet")
    with pytest.raises(ValueError, match=r"mode 'hybrid'.*'hyb'.*Available options"):
        DeepSupervised(net, "hybrid")
    with pytest.raises(ValueError, match=r"preset 'bratz'.*'brats'"):
        DeepSupervised(net, "hyb", weights="bratz")
    with pytest.raises(ValueError, match=r"field 'alfa'.*'alpha'"):
        DeepSupervised(net, "hyb", weights={"alfa": 1.0})
    with pytest.raises(ValueError, match=r"label_mode 'binray'.*'binary'"):
        DeepSupervised(net, "hyb", label_mode="binray")


@pytest.mark.parametrize("mode", ["none", "deep", "hyb", "up"])
def test_training_without_target_is_the_plain_model_and_its_loss_is_refused(mode):
    ds = _ds(mode).train()
    x, y = make_batch("binary", 1)
    out = ds(x)
    assert type(out) is torch.Tensor and out.shape == (2, 1, 32, 32)
    with pytest.raises(TypeError, match=r"needs the DSOutput of ds\(x, y\).*call ds\(x, y\)"):
        ds.loss(out, y)


def test_label_mode_that_does_not_fit_the_model():
    with pytest.raises(ValueError, match=r"'binary' needs a model with 1 output channel.*has 2"):
        _ds(label_mode="binary", classes=2)
    with pytest.raises(ValueError, match=r"'multiclass' needs at least 2 output channels"):
        _ds(label_mode="multiclass", classes=1)


def test_unsupported_model_names_its_class_and_the_decorator():
    with pytest.raises(UnsupportedModelError, match=r"Sequential.*register_adapter"):
        DeepSupervised(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)), "hyb")
