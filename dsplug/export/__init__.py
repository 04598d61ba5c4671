"""Export a trained model without dsplug's wrapper: safetensors weights with the metadata that
rebuilds the model, or an ONNX graph.

The safetensors file holds the bare model's ``state_dict`` (the keys ``model.state_dict()``
has, no ``model.`` prefix, no wrapper parameter) and, as string metadata, ``format``
(``dsplug-model``), ``dsplug_version``, ``model_class`` and, when known, ``model_config``: the
JSON config that :func:`dsplug.train.models.build_model` rebuilds the model from (dsplug's own
nets and smp architectures; pass ``config=`` for others). :func:`load_exported` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._checks import look_up_option
from .._version import __version__
from ..adapters import adapter_for
from ..wrapper import DeepSupervised

__all__ = ["EXPORT_FORMATS", "export_checkpoint", "export_model", "load_exported"]

EXPORT_FORMATS = ("safetensors", "onnx")
_FORMAT_TAG = "dsplug-model"


@contextmanager
def _bare(model: nn.Module):
    """The bare model in eval mode, with no dsplug hook; train flags restored afterwards."""
    wrapper = model if isinstance(model, DeepSupervised) else None
    bare = wrapper.model if wrapper is not None else model
    flags = [(m, m.training) for m in model.modules()]
    model.eval()  # the wrapper's eval removes its hooks
    try:
        yield bare
    finally:
        for m, flag in flags:
            m.training = flag
        if wrapper is not None:
            wrapper.train(wrapper.training)  # hooks back where training needs them


def _config_of(model: nn.Module) -> dict[str, Any] | None:
    from ..train.models import model_config

    try:
        return model_config(model)
    except ValueError:
        return None


def _example(model: nn.Module) -> torch.Tensor:
    """One input at twice the model's divisor per axis, on its device and dtype."""
    a = adapter_for(model)
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    size = (2 * a.divisor,) * a.spatial_dims
    kwargs = {} if param is None else {"device": param.device, "dtype": param.dtype}
    return torch.randn(1, a.in_channels, *size, **kwargs)


def _write_safetensors(bare: nn.Module, path: Path, config: Mapping[str, Any] | None) -> None:
    from safetensors.torch import save_file

    # Own copies: safetensors refuses tensors that share storage (tied or viewed weights).
    state = {k: v.detach().cpu().contiguous().clone() for k, v in bare.state_dict().items()}
    metadata = {
        "format": _FORMAT_TAG,
        "dsplug_version": __version__,
        "model_class": f"{type(bare).__module__}.{type(bare).__qualname__}",
    }
    if config is not None:
        metadata["model_config"] = json.dumps(dict(config), sort_keys=True)
    save_file(state, str(path), metadata=metadata)


def _write_onnx(bare: nn.Module, path: Path, example: torch.Tensor) -> None:
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as error:
        raise ImportError(
            "ONNX export needs the optional dependencies onnx and onnxscript: "
            "pip install 'dsplug[onnx]'."
        ) from error
    torch.onnx.export(bare, (example,), str(path), dynamo=True, external_data=False)


def export_model(
    model: nn.Module,
    out_path: str | Path,
    format: str = "safetensors",
    *,
    config: Mapping[str, Any] | None = None,
    example_input: torch.Tensor | None = None,
) -> Path:
    """Write the bare model of ``model`` (a model, or a :class:`DeepSupervised` around one).

    Args:
        model: the model; a DeepSupervised wrapper is exported as its bare model (left usable).
        out_path: the file to write (parent folders are created; written atomically).
        format: ``safetensors`` (weights + rebuild metadata) or ``onnx`` (the inference graph).
        config: the model config for :func:`dsplug.train.models.build_model`; default: derived
            from the model when it is dsplug's own net or an smp architecture, else none.
        example_input: ONNX only: the input to trace with; default one sample at twice the
            model's divisor per axis.

    Returns:
        The path written.

    Example:
        >>> ds = DeepSupervised(UNet(1, 2, base_channels=8, depth=3), mode="hyb")
        >>> path = export_model(ds, tmp / "unet.safetensors")
        >>> load_exported(path).state_dict().keys() == ds.model.state_dict().keys()
        True
    """
    from ..train.atomic import atomic_path

    look_up_option(format, EXPORT_FORMATS, "export format")
    path = Path(out_path)
    with _bare(model) as bare, atomic_path(path) as part:  # all or nothing at `path`
        if format == "safetensors":
            _write_safetensors(bare, part, config if config is not None else _config_of(bare))
        else:
            _write_onnx(bare, part, example_input if example_input is not None else _example(bare))
    return path


def export_checkpoint(
    ckpt_path: str | Path, out_path: str | Path, format: str = "safetensors"
) -> Path:
    """Export the bare model of a dsplug Trainer checkpoint (see :func:`export_model`)."""
    from ..train.predict import load_model

    model, ckpt = load_model(ckpt_path)
    return export_model(model, out_path, format, config=ckpt.get("model_config"))


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild and load a model written by ``export_model(..., format="safetensors")``.

    Raises:
        ValueError: the file is not a dsplug export, or it holds no model config (load its
            weights into your own model with ``safetensors.torch.load_file``).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    from ..train.models import build_model

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if metadata.get("format") != _FORMAT_TAG:
        raise ValueError(f"{path} is not a dsplug model export (no format={_FORMAT_TAG!r}).")
    if "model_config" not in metadata:
        raise ValueError(
            f"{path} holds the weights of a {metadata.get('model_class')} without a model "
            "config: build the model yourself and load_state_dict(safetensors.torch.load_file"
            "(path))."
        )
    model = build_model(json.loads(metadata["model_config"]))
    model.load_state_dict(load_file(str(path), device=str(device)), strict=True)
    return model.to(device).eval()
