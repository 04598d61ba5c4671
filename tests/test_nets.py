import io

import pytest
import torch

from dsplug import UNet, UNetPlusPlus
from dsplug._checks import ShapeError


@pytest.mark.parametrize("cls", [UNet, UNetPlusPlus])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_output_shape_and_levels(cls, spatial_dims):
    net = cls(in_channels=2, classes=3, base_channels=8, depth=3, spatial_dims=spatial_dims)
    x = torch.randn(2, 2, *([16] * spatial_dims))
    assert net(x).shape == (2, 3, *([16] * spatial_dims))
    assert net.encoder.channels == [8, 16, 32]
    assert net.divisor == 4


def test_paper_defaults():
    net = UNet()
    assert net.encoder.channels == [64, 128, 256, 512, 1024]
    assert isinstance(net.encoder.blocks[0][0][1], torch.nn.BatchNorm2d)


def test_instance_norm_and_3d_ops():
    net = UNet(base_channels=8, depth=2, norm="instance", spatial_dims=3)
    assert isinstance(net.encoder.blocks[0][0][1], torch.nn.InstanceNorm3d)
    assert isinstance(net.encoder.blocks[0][0][0], torch.nn.Conv3d)


def test_unetpp_has_nested_nodes():
    net = UNetPlusPlus(base_channels=8, depth=3)
    assert sorted(net.decoder.blocks.keys()) == ["x_0_1", "x_0_2", "x_1_1"]


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match=r"norm 'group'.*Available options"):
        UNet(norm="group")
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3, got 4"):
        UNet(spatial_dims=4)
    with pytest.raises(ValueError, match="depth must be an integer >= 2, got 1"):
        UNet(depth=1)


def test_indivisible_input_is_refused():
    net = UNet(base_channels=8, depth=3)
    with pytest.raises(ShapeError, match=r"\(30, 32\).*divisible by 4"):
        net(torch.randn(1, 1, 30, 32))


def test_wrong_channels_is_refused():
    net = UNet(in_channels=1, base_channels=8, depth=3)
    with pytest.raises(ShapeError, match=r"got \(1, 3, 32, 32\)"):
        net(torch.randn(1, 3, 32, 32))


@pytest.mark.filterwarnings("ignore:`torch.jit.(script|load)` is deprecated:FutureWarning")
@pytest.mark.parametrize("cls", [UNet, UNetPlusPlus])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_torch_jit_script_equals_eager(cls, spatial_dims):
    """The own nets script (README: ``torch.jit.script(ds.eval())``), bare and wrapped, and
    the scripted module computes exactly the eager output, also after a save/load."""
    from dsplug import DeepSupervised

    torch.manual_seed(0)
    net = cls(in_channels=1, classes=2, base_channels=4, depth=3, spatial_dims=spatial_dims)
    x = torch.randn(2, 1, *([16] * spatial_dims))
    scripted = torch.jit.script(net.eval())
    torch.testing.assert_close(scripted(x), net(x), rtol=0, atol=0)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.jit.load(buffer)(x), net(x), rtol=0, atol=0)

    ds = DeepSupervised(net, "hyb")
    wrapped = torch.jit.script(ds.eval())
    torch.testing.assert_close(wrapped(x), ds(x), rtol=0, atol=0)
    with pytest.raises(torch.jit.Error, match="divisible by 4"):
        wrapped(torch.randn(1, 1, *([18] * spatial_dims)))
    with pytest.raises(torch.jit.Error, match=r"expected input of shape \(B, 1"):
        wrapped(torch.randn(1, 3, *([16] * spatial_dims)))
