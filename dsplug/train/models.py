"""Build a segmentation model from a plain config dict (the one place that does it).

Configs are flat dicts of plain types, stored in checkpoints so that ``evaluate`` and
``predict`` rebuild the very model that was trained:

- own nets: ``{"arch": "unet" | "unetpp", "in_channels", "classes", "base_channels", "depth",
  "norm", "spatial_dims"}`` (the net's ``config()`` plus ``arch``);
- smp 0.6: ``{"arch": "smp-unet" | "smp-unetpp" | "smp-manet" | "smp-linknet" | "smp-fpn",
  "encoder_name", "in_channels", "classes", ...}`` (any other keyword of the smp class);
  ``encoder_weights`` is always None (nothing is ever downloaded);
- MONAI (the optional extra): ``{"arch": "monai-dynunet" | "monai-basicunet", "spatial_dims",
  "in_channels", "classes", ...}`` (any other keyword of the MONAI class; ``classes`` is its
  ``out_channels``). :func:`monai_settings` derives the widths from dsplug's own settings
  (``base_channels``, ``depth``, ``norm``), so one CLI serves all three families in 2D and 3D.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from torch import nn

from .._checks import look_up_option
from ..nets import UNet, UNetPlusPlus

__all__ = [
    "MODEL_ARCHS",
    "MONAI_ARCHS",
    "MONAI_NET_DEFAULTS",
    "SMP_ARCHS",
    "build_model",
    "check_encoder",
    "config_divisor",
    "model_config",
    "model_divisor",
    "monai_settings",
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
#: CLI / config name -> monai.networks.nets class name.
MONAI_ARCHS: dict[str, str] = {"monai-dynunet": "DynUNet", "monai-basicunet": "BasicUNet"}
MODEL_ARCHS: tuple[str, ...] = (*_OWN, *SMP_ARCHS, *MONAI_ARCHS)

#: MONAI nets' settings when not given: MONAI's own defaults (32 channels at level 0, instance
#: norm with affine) and nnU-Net's five levels for DynUNet. BasicUNet has five levels, fixed.
MONAI_NET_DEFAULTS: dict[str, Any] = {"base_channels": 32, "depth": 5, "norm": "instance"}
#: BasicUNet's fixed stride: four 2x max-poolings.
_BASIC_UNET_DIVISOR = 16
#: DynUNet's fewest levels (MONAI refuses fewer than three kernel sizes).
_DYNUNET_MIN_DEPTH = 3


def _smp_class(arch: str) -> type[nn.Module]:
    import segmentation_models_pytorch as smp

    return getattr(smp, SMP_ARCHS[arch])


def _monai_class(arch: str) -> type[nn.Module]:
    try:
        from monai.networks import nets
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] != "monai":
            raise
        raise ValueError(
            f"model arch {arch!r} needs MONAI, which is not installed; install it with "
            "pip install 'dsplug[monai]' (or pick --model unet / unetpp / smp-*)."
        ) from None
    return getattr(nets, MONAI_ARCHS[arch])


def _monai_norm(norm: str) -> str | list[Any]:
    """dsplug's norm name as MONAI's norm argument (instance norms with affine, as MONAI's)."""
    if norm == "instance":
        return ["instance", {"affine": True}]  # a list: the config round-trips through JSON
    if norm == "batch":
        return "batch"
    raise ValueError(f"norm must be 'batch' or 'instance', got {norm!r}.")


def monai_settings(
    arch: str,
    *,
    base_channels: int | None = None,
    depth: int | None = None,
    norm: str | None = None,
) -> dict[str, Any]:
    """A MONAI net's config (without ``in_channels``, ``classes`` and ``spatial_dims``) from
    dsplug's own settings; None takes :data:`MONAI_NET_DEFAULTS`.

    ``monai-dynunet``: ``depth`` levels of 3-kernels, strides ``[1, 2, ...]`` (stride
    ``2 ** (depth - 1)``), ``base_channels * 2**k`` channels at level k (capped at 10x, like
    MONAI's 32 -> 320). ``monai-basicunet``: MONAI's features pattern ``(b, b, 2b, 4b, 8b, b)``
    for ``b = base_channels``; its five levels are fixed (stride 16), so ``depth`` must be None.

    Raises:
        ValueError: an arch that is not MONAI's, a DynUNet depth below 3, a depth for
            BasicUNet, or an unknown norm.

    Example:
        >>> monai_settings("monai-dynunet", base_channels=8, depth=3)["filters"]
        [8, 16, 32]
    """
    arch = look_up_option(arch, tuple(MONAI_ARCHS), "MONAI arch")
    defaults = MONAI_NET_DEFAULTS
    base = defaults["base_channels"] if base_channels is None else base_channels
    norm_arg = _monai_norm(defaults["norm"] if norm is None else norm)
    if arch == "monai-basicunet":
        if depth is not None:
            raise ValueError(
                f"monai-basicunet has five levels, fixed (stride {_BASIC_UNET_DIVISOR}); got "
                f"depth={depth}. Drop it, or use monai-dynunet for another depth."
            )
        features = [base, base, 2 * base, 4 * base, 8 * base, base]
        return {"arch": arch, "features": features, "norm": norm_arg}
    depth = defaults["depth"] if depth is None else depth
    if depth < _DYNUNET_MIN_DEPTH:
        raise ValueError(
            f"monai-dynunet needs depth >= {_DYNUNET_MIN_DEPTH} (MONAI's DynUNet builds at least "
            f"three levels), got depth={depth}; use dsplug's own unet for two levels."
        )
    return {
        "arch": arch,
        "kernel_size": [3] * depth,
        "strides": [1] + [2] * (depth - 1),
        "upsample_kernel_size": [2] * (depth - 1),
        "filters": [min(base * 2**k, 10 * base) for k in range(depth)],
        "norm_name": norm_arg,
    }


def config_divisor(config: dict[str, Any]) -> int:
    """The stride of the model a config (or a CLI's settings) describes, without building it:
    every spatial input size must be a multiple of it.

    Raises:
        ValueError: unknown arch.
    """
    arch = look_up_option(config["arch"], MODEL_ARCHS, "model arch")
    if arch in SMP_ARCHS:
        return 32  # smp encoders of depth 5: output stride 32
    if arch == "monai-basicunet":
        return _BASIC_UNET_DIVISOR
    if arch == "monai-dynunet":
        strides = [s if isinstance(s, int) else max(s) for s in config["strides"]]
        return math.prod(strides)
    return 2 ** (config.get("depth", 5) - 1)


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
        ValueError: unknown ``arch``, unknown keys, an unknown encoder, ``encoder_weights``
            other than None, or a MONAI arch without MONAI installed.

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
    if arch in MONAI_ARCHS:
        return _build_monai(arch, kwargs)
    import segmentation_models_pytorch as smp

    _check_keys(kwargs, _smp_class(arch), arch)
    if kwargs.pop("encoder_weights", None) is not None:
        raise ValueError(
            f"encoder_weights must be None (dsplug never downloads weights), "
            f"got {config['encoder_weights']!r}."
        )
    check_encoder(kwargs.get("encoder_name", "resnet34"))
    return smp.create_model(SMP_ARCHS[arch], encoder_weights=None, **kwargs)


def _build_monai(arch: str, kwargs: dict[str, Any]) -> nn.Module:
    cls = _monai_class(arch)
    if "out_channels" in kwargs:
        raise ValueError(
            f"The model config of arch {arch!r} names the output channels 'classes' (as every "
            "dsplug config does), got 'out_channels'; rename it."
        )
    params = inspect.signature(cls.__init__).parameters
    allowed = {n for n in params if n not in ("self", "out_channels")} | {"classes"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(
            f"Unknown keys {unknown} in the model config of arch {arch!r}; "
            f"valid keys are {sorted(allowed)}."
        )
    kwargs = dict(kwargs)
    if "classes" in kwargs:
        kwargs["out_channels"] = kwargs.pop("classes")
    return cls(**kwargs)


_DYNUNET_KEYS = (
    "spatial_dims",
    "in_channels",
    "kernel_size",
    "strides",
    "upsample_kernel_size",
    "filters",
    "dropout",
    "norm_name",
    "act_name",
    "deep_supervision",
    "deep_supr_num",
    "trans_bias",
)


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively (configs are stored as JSON)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _monai_model_config(model: nn.Module) -> dict[str, Any] | None:
    """A DynUNet's config from the constructor arguments it keeps (BasicUNet keeps none)."""
    if type(model).__name__ != "DynUNet" or not hasattr(model, "norm_name"):
        return None
    config = {k: _plain(getattr(model, k)) for k in _DYNUNET_KEYS}
    from monai.networks.blocks.dynunet_block import UnetResBlock

    config["res_block"] = model.conv_block is UnetResBlock
    return {"arch": "monai-dynunet", **config, "classes": model.out_channels}


def model_config(model: nn.Module) -> dict[str, Any]:
    """The config that rebuilds ``model`` with :func:`build_model`.

    Raises:
        ValueError: the model is neither dsplug's own net, a supported smp architecture nor
            a MONAI DynUNet (a BasicUNet keeps no record of its arguments: build it with
            :func:`build_model`, or pass its config to the Trainer explicitly).
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
    monai = _monai_model_config(model)
    if monai is not None:
        return monai
    raise ValueError(
        f"Cannot derive a config for {type(model).__name__}: build_model knows "
        f"{list(MODEL_ARCHS)}. Pass model_config explicitly, or build the model with "
        "dsplug.train.build_model."
    )


def model_divisor(model: nn.Module) -> int:
    """Every spatial input size of ``model`` must be a multiple of this.

    Raises:
        ValueError: the model declares no stride (``divisor`` or ``encoder.output_stride``,
            or a MONAI net's strides).
    """
    divisor = getattr(model, "divisor", None)
    if divisor is None:
        divisor = getattr(getattr(model, "encoder", None), "output_stride", None)
    if divisor is None and type(model).__name__ in MONAI_ARCHS.values():
        from ..adapters import adapter_for

        divisor = adapter_for(model).divisor  # from the strides it was built with
    if not isinstance(divisor, int) or divisor < 1:
        raise ValueError(
            f"{type(model).__name__} declares no input divisor (expected an int attribute "
            "'divisor' or 'encoder.output_stride')."
        )
    return divisor
