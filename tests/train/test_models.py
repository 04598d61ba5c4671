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
