"""Adapters: how DeepSupervised reaches each model family's decoder levels and encoder.

Register your own model with :func:`register_adapter` on a :class:`ModelAdapter` subclass.
"""

from .base import (
    ALL_MODES,
    DecoderStage,
    ModelAdapter,
    UnsupportedModelError,
    adapter_for,
    register_adapter,
    registered_families,
)

__all__ = [
    "ALL_MODES",
    "DecoderStage",
    "ModelAdapter",
    "UnsupportedModelError",
    "adapter_for",
    "register_adapter",
    "registered_families",
]
