"""build_model: one factory for own nets and smp architectures, clear errors for bad configs."""

from __future__ import annotations

import pytest
import torch

from dsplug import UNet, UNetPlusPlus
from dsplug.train.models import (
    SMP_ARCHS,
    build_model,
    check_encoder,
    model_config,
    model_divisor,
)


@pytest.mark.parametrize(("arch", "cls"), [("unet", UNet), ("unetpp", UNetPlusPlus)])
def test_own_nets_round_trip_through_their_config(arch: str, cls: type) -> None:
    cfg = {"arch": arch, "in_channels": 2, "classes": 3, "base_channels": 8, "depth": 3}
    net = build_model(cfg)
    assert type(net) is cls
    again = build_model(model_config(net))
    assert model_config(again) == model_config(net)
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}
    assert model_divisor(net) == 4
    assert net(torch.zeros(1, 2, 32, 32)).shape == (1, 3, 32, 32)


def test_smp_model_round_trips_and_never_downloads() -> None:
    cfg = {"arch": "smp-linknet", "encoder_name": "resnet18", "in_channels": 1, "classes": 2}
    net = build_model(cfg)
    assert type(net).__name__ == SMP_ARCHS["smp-linknet"]
    derived = model_config(net)
    assert derived["encoder_weights"] is None
    again = build_model(derived)
    assert net.state_dict().keys() == again.state_dict().keys()
    assert model_divisor(net) == 32
    with pytest.raises(ValueError, match="encoder_weights must be None"):
        build_model({**cfg, "encoder_weights": "imagenet"})


def test_bad_configs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="did you mean 'unet'"):
        build_model({"arch": "unte"})
    with pytest.raises(ValueError, match=r"Unknown keys \['clases'\]"):
        build_model({"arch": "unet", "clases": 3})
    with pytest.raises(ValueError, match="Unknown encoder 'resnet19'"):
        build_model({"arch": "smp-unet", "encoder_name": "resnet19"})
    with pytest.raises(ValueError, match="timm has no model"):
        check_encoder("tu-not_a_model")
    assert check_encoder("tu-resnet18") == "tu-resnet18"
    with pytest.raises(ValueError, match="'arch' key"):
        build_model({"in_channels": 1})
    with pytest.raises(ValueError, match="Cannot derive a config"):
        model_config(torch.nn.Conv2d(1, 1, 1))


def test_an_smp_model_built_directly_has_the_same_config() -> None:
    import segmentation_models_pytorch as smp

    cfg = {"arch": "smp-fpn", "encoder_name": "resnet18", "in_channels": 1, "classes": 2}
    direct = smp.FPN("resnet18", encoder_weights=None, in_channels=1, classes=2)
    assert model_config(direct) == model_config(build_model(cfg))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("arch", ["monai-dynunet", "monai-basicunet"])
def test_monai_nets_build_from_dsplug_settings_and_round_trip(arch: str, dims: int) -> None:
    pytest.importorskip("monai.networks.nets")
    import json

    from dsplug.train.models import config_divisor, monai_settings

    depth = 3 if arch == "monai-dynunet" else None
    settings = monai_settings(arch, base_channels=4, depth=depth, norm="batch")
    cfg = {**settings, "spatial_dims": dims, "in_channels": 2, "classes": 3}
    net = build_model(json.loads(json.dumps(cfg)))  # configs travel as JSON
    assert model_divisor(net) == config_divisor(cfg) == (4 if depth else 16)
    assert net(torch.zeros(2, 2, *(16,) * dims)).shape == (2, 3, *(16,) * dims)
    if arch == "monai-dynunet":  # DynUNet keeps its arguments: its config is derived
        again = build_model(json.loads(json.dumps(model_config(net))))
        shapes = {k: v.shape for k, v in net.state_dict().items()}
        assert shapes == {k: v.shape for k, v in again.state_dict().items()}
    else:
        with pytest.raises(ValueError, match="Cannot derive a config for BasicUNet"):
            model_config(net)


def test_monai_configs_name_the_problem() -> None:
    pytest.importorskip("monai.networks.nets")
    from dsplug.train.models import monai_settings

    cfg = {**monai_settings("monai-dynunet", depth=3), "spatial_dims": 3, "in_channels": 1}
    with pytest.raises(ValueError, match="names the output channels 'classes'"):
        build_model({**cfg, "out_channels": 2})
    with pytest.raises(ValueError, match=r"Unknown keys \['filtres'\]"):
        build_model({**cfg, "classes": 2, "filtres": [4, 8, 16]})
    with pytest.raises(ValueError, match="five levels, fixed"):
        monai_settings("monai-basicunet", depth=4)
    with pytest.raises(ValueError, match="did you mean 'monai-dynunet'"):
        monai_settings("monai-dynunt")
    assert monai_settings("monai-dynunet", base_channels=32)["filters"] == [32, 64, 128, 256, 320]
