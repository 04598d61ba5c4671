"""The adapter contract: where a model's decoder levels are, how to run its encoder, which
reconstruction decoder fits it; plus the registry that DeepSupervised consults."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
from torch import nn

from dsplug.options import Mode

__all__ = [
    "ALL_MODES",
    "DecoderStage",
    "ModelAdapter",
    "UnsupportedModelError",
    "adapter_for",
    "register_adapter",
    "registered_families",
]

ALL_MODES: frozenset[str] = frozenset(Mode)


@dataclass(frozen=True)
class DecoderStage:
    """One tap point: the output of ``module_path`` (``""`` is the model itself).

    Args:
        name: a readable name, e.g. ``"level2"`` or ``"bottleneck"``.
        module_path: dotted path of the module inside the model (``model.get_submodule``).
        channels: channels of the tapped tensor.
        reduction: its stride relative to the input (2^k at level k).
        output_index: picks an element when the module returns a list or tuple
            (e.g. the bottleneck as the encoder's output ``[-1]``).
    """

    name: str
    module_path: str
    channels: int
    reduction: int
    output_index: int | None = None


class UnsupportedModelError(TypeError):
    """The model (or the model with this mode) has no adapter."""


class ModelAdapter:
    """Describes one family of models to DeepSupervised.

    Subclasses set ``supported_modes`` when the family cannot run every mode, and implement the
    methods below. They are registered for one or more model classes with
    :func:`register_adapter`.
    """

    family: ClassVar[str] = "custom"
    supported_modes: ClassVar[frozenset[str]] = ALL_MODES

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    # --- what the model is -------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        """Image channels the model expects."""
        raise NotImplementedError

    @property
    def classes(self) -> int:
        """Channels of the model's logits."""
        raise NotImplementedError

    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        return 2

    @property
    def divisor(self) -> int:
        """Every spatial input size must be a multiple of this."""
        return 32

    def check_supported(self, mode: str) -> None:
        """Raise UnsupportedModelError if this instance cannot run ``mode``.

        The default checks ``supported_modes``; adapters add instance checks (e.g. a MONAI
        DynUNet built with its own deep supervision).
        """
        if mode not in self.supported_modes:
            raise UnsupportedModelError(
                f"{type(self.model).__name__} ({self.family} adapter) does not support "
                f"mode={mode!r}; supported modes are {sorted(self.supported_modes)}."
            )

    # --- decoder taps --------------------------------------------------------------------------
    def decoder_stages(self) -> list[DecoderStage]:
        """The seg decoder's levels y_k, shallowest first; the last is the bottleneck y_K."""
        raise NotImplementedError

    # --- encoder -------------------------------------------------------------------------------
    def encoder(self) -> nn.Module:
        """The module whose weights the tied decoder transposes (and ``auto`` copies)."""
        raise NotImplementedError

    def encode(self, encoder: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        """Run ``encoder`` (the model's, or a copy of it) and return its level features,
        shallowest first, the bottleneck last."""
        return list(encoder(x))

    def build_reconstruction_decoder(
        self, encoder: nn.Module, *, mask_classes: int | None, variational: bool
    ) -> nn.Module:
        """Build the decoder that reconstructs from ``encoder``'s bottleneck.

        Tied (``variational=False``): transposes of ``encoder``'s own weight tensors. VAE
        (``variational=True``): the same shape with its own weights and a reparameterised
        bottleneck. Its ``forward(bottleneck, image_shape)`` returns a ``ReconstructionOutput``;
        ``mask_classes=None`` builds no ``rec_mask`` head.
        """
        raise NotImplementedError


_Adapter = TypeVar("_Adapter", bound=type[ModelAdapter])
_REGISTRY: dict[type, type[ModelAdapter]] = {}


def register_adapter(*model_classes: type) -> Callable[[_Adapter], _Adapter]:
    """Class decorator: use this adapter for models of these classes (and their subclasses).

    Example:
        >>> @register_adapter(MyNet)
        ... class MyNetAdapter(ModelAdapter):
        ...     family = "mynet"
        ...     def decoder_stages(self): ...
    """
    if not model_classes:
        raise ValueError("register_adapter needs at least one model class.")

    def decorate(adapter_cls: _Adapter) -> _Adapter:
        for cls in model_classes:
            if cls in _REGISTRY and _REGISTRY[cls] is not adapter_cls:
                raise ValueError(
                    f"An adapter is already registered for {cls.__qualname__}: "
                    f"{_REGISTRY[cls].__qualname__}."
                )
            _REGISTRY[cls] = adapter_cls
        return adapter_cls

    return decorate


def registered_families() -> list[str]:
    """Names of the model classes that have an adapter."""
    return sorted({cls.__qualname__ for cls in _REGISTRY})


def adapter_for(model: nn.Module) -> ModelAdapter:
    """The registered adapter for ``model``'s class (the nearest in its MRO)."""
    _load_builtin_adapters()
    for cls in type(model).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls](model)
    raise UnsupportedModelError(
        f"No dsplug adapter for model class {type(model).__name__} "
        f"({type(model).__module__}). Supported classes: {registered_families()}. "
        "Register one with `@dsplug.adapters.register_adapter(YourModel)` on a "
        "`dsplug.adapters.ModelAdapter` subclass."
    )


@functools.cache
def _load_builtin_adapters() -> None:
    """Import the built-in adapter modules so that their decorators run (once).

    Each module registers only what its optional dependency allows (MONAI's adapters register
    only when MONAI is installed).
    """
    for name in BUILTIN_ADAPTER_MODULES:
        importlib.import_module(f"dsplug.adapters.{name}")


BUILTIN_ADAPTER_MODULES = ("own", "smp", "monai")
