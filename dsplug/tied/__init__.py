"""Reconstruction decoders: tied (transposes of the encoder's own weights) and the VAE baseline."""

from .base import ReconstructionOutput
from .own import OwnTiedDecoder
from .variational import VariationalBottleneck

__all__ = ["OwnTiedDecoder", "ReconstructionOutput", "VariationalBottleneck"]
