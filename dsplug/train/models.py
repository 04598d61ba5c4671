"""Build a segmentation model from a plain config dict (the one place that does it).

Configs are flat dicts of plain types, stored in checkpoints so that ``evaluate`` and
``predict`` rebuild the very model that was trained:

- own nets: ``{"arch": "unet" | "unetpp", "in_channels", "classes", "base_channels", "depth",
  "norm", "spatial_dims"}`` (the net's ``config()`` plus ``arch``);
- smp 0.6: ``{"arch": "smp-unet" | "smp-unetpp" | "smp-manet" | "smp-linknet" | "smp-fpn",
  "encoder_name", "in_channels", "classes", ...}`` (any other keyword of the smp class);
  ``encoder_weights`` is always None (nothing is ever downloaded).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from .._checks import look_up_option
from ..nets import UNet, UNetPlusPlus

__all__ = [
    "MODEL_ARCHS",
    "SMP_ARCHS",
    "build_model",
    "check_encoder",
    "model_config",
    "model_divisor",
]

_OWN: dict[str, type[nn.Module]] = {"unet": UNet, "unetpp": UNetPlusPlus}
#: CLI / config name -> segmentation_models_pytorch class name.
SMP_ARCHS: dict[str, str] = {
    "smp-unet": "Unet",
    "smp-unetpp": "UnetPlusPlus",
    "smp-manet": "MAnet",
    "smp-linknet": "Linknet",
    "smp-fpn": "FPN",
}
MODEL_ARCHS: tuple[str, ...] = (*_OWN, *SMP_ARCHS)


def _smp_class(arch: str) -> type[nn.Module]:
    import segmentation_models_pytorch as smp

    return getattr(smp, SMP_ARCHS[arch])


def check_encoder(name: str) -> str:
    """Return ``name`` if smp knows the encoder (its own names or ``tu-<timm model>``).

    Raises:
        ValueError: unknown encoder; the message suggests close names.
    """
    if not isinstance(name, str):
        raise TypeError(f"encoder must be a str, got {type(name).__name__}.")
    if name.startswith("tu-"):
        import timm

        if timm.is_model(name[3:]):
            return name
        raise ValueError(
            f"Unknown encoder {name!r}: timm has no model {name[3:]!r} "
            "(see timm.list_models() for the names after 'tu-')."
        )
    from segmentation_models_pytorch.encoders import get_encoder_names

    try:
        return look_up_option(name, get_encoder_names(), "encoder")
    except ValueError as exc:
        raise ValueError(f"{exc} Any timm model also works as 'tu-<name>'.") from None


def _check_keys(config: dict[str, Any], cls: type[nn.Module], arch: str) -> None:
    params = inspect.signature(cls.__init__).parameters
    allowed = {
        n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
    }
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"Unknown keys {unknown} in the model config of arch {arch!r}; "
            f"valid keys are {sorted(allowed)}."
        )


def build_model(config: dict[str, Any]) -> nn.Module:
    """Build the segmentation model a config describes (fresh, randomly initialised).

    Args:
        config: ``{"arch": ..., **constructor arguments}`` (see the module docstring).

    Returns:
        The bare model (``model(x)`` returns seg logits).

    Raises:
        ValueError: unknown ``arch``, unknown keys, an unknown encoder, or ``encoder_weights``
            other than None.

    Example:
        >>> net = build_model({"arch": "unet", "in_channels": 1, "classes": 2, "depth": 3})
        >>> type(net).__name__, net.depth
        ('UNet', 3)
    """
    if not isinstance(config, dict) or "arch" not in config:
        raise ValueError(f"A model config is a dict with an 'arch' key, got {config!r}.")
    arch = look_up_option(config["arch"], MODEL_ARCHS, "model arch")
    kwargs = {k: v for k, v in config.items() if k != "arch"}
    if arch in _OWN:
        _check_keys(kwargs, _OWN[arch], arch)
        return _OWN[arch](**kwargs)
    import segmentation_models_pytorch as smp

    _check_keys(kwargs, _smp_class(arch), arch)
    if kwargs.pop("encoder_weights", None) is not None:
        raise ValueError(
            f"encoder_weights must be None (dsplug never downloads weights), "
            f"got {config['encoder_weights']!r}."
        )
    check_encoder(kwargs.get("encoder_name", "resnet34"))
    return smp.create_model(SMP_ARCHS[arch], encoder_weights=None, **kwargs)


def model_config(model: nn.Module) -> dict[str, Any]:
    """The config that rebuilds ``model`` with :func:`build_model`.

    Raises:
        ValueError: the model is neither dsplug's own net nor a supported smp architecture
            (pass its config to the Trainer explicitly).
    """
    for arch, cls in _OWN.items():
        if type(model) is cls:
            return {"arch": arch, **model.config()}
    for arch, class_name in SMP_ARCHS.items():
        # smp records every model's constructor arguments (its public ``config``), also for
        # models built without build_model.
        smp_config = getattr(model, "config", None)
        if type(model).__name__ == class_name and isinstance(smp_config, dict):
            plain = {k: list(v) if isinstance(v, tuple) else v for k, v in smp_config.items()}
            return {"arch": arch, **plain, "encoder_weights": None}
    raise ValueError(
        f"Cannot derive a config for {type(model).__name__}: build_model knows "
        f"{list(MODEL_ARCHS)}. Pass model_config explicitly, or build the model with "
        "dsplug.train.build_model."
    )


def model_divisor(model: nn.Module) -> int:
    """Every spatial input size of ``model`` must be a multiple of this.

    Raises:
        ValueError: the model declares no stride (``divisor`` or ``encoder.output_stride``).
    """
    divisor = getattr(model, "divisor", None)
    if divisor is None:
        divisor = getattr(getattr(model, "encoder", None), "output_stride", None)
    if not isinstance(divisor, int) or divisor < 1:
        raise ValueError(
            f"{type(model).__name__} declares no input divisor (expected an int attribute "
            "'divisor' or 'encoder.output_stride')."
        )
    return divisor
