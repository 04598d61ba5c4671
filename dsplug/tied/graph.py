"""A tied-weight reconstruction decoder derived from any encoder's computation graph.

μ-Net reconstructs the input image from the encoder's bottleneck with the transposes of the
encoder's own weight tensors. :class:`GraphTiedDecoder` builds that decoder for any encoder
(smp and timm encoders, MONAI encoders exposed as a module returning level features, ...):

1. The encoder is traced once with ``torch.export`` at a reference input size, with symbolic
   batch and spatial sizes (a static trace is the fallback; it then serves that size only).
   Steps 1 to 3 depend only on the encoder's structure: their result (a blueprint, holding none
   of the encoder's tensors) is cached per structural signature, so that wrapping a second
   model with the same encoder skips them (:func:`trace_cache_info`).
2. The ATen graph is walked backwards from the bottleneck and transposed node by node:

   - conv -> conv_transpose with the *same* weight tensor (same stride, padding, dilation,
     groups; the output padding that restores the forward input's size); a forward
     conv_transpose -> conv. linear -> linear with the transposed weight; a matmul with a
     weight -> a matmul with its transpose. Each gets a new bias of its own (zeros at first).
   - a residual add (sub) -> a fan-out: the reconstruction goes to both operands (negated for
     the subtracted one; summed over broadcast dims); a tensor used by several nodes -> the sum
     of their reconstructions. Adding a constant (a position embedding) is dropped.
   - norms (batch/layer/group/instance/RMS) -> a fresh norm of the same kind over the same
     channels with the decoder's own parameters (batch norms use batch statistics in training
     and running ones in eval, like the encoder's).
   - activations are re-applied (functional form); a self-gating product x * f(x) (swish,
     hard-swish) is re-applied as r * f(r); a multiplication or division by a scalar or by an
     encoder tensor (layer scale) is re-applied with the same tensor.
   - pooling (max/avg/adaptive) and reductions (mean/sum/amax) -> upsampling (nearest /
     broadcast) to the forward input's size; resizing -> area resizing back.
   - gates are cut: in a product of two image-dependent tensors, the factor that is broadcast or
     comes from sigmoid/softmax is a gate; the main factor receives the reconstruction as
     identity (squeeze-excitation, selective-kernel and attention gates). A product of two
     full-size non-gate tensors sends the reconstruction to both. Division by an
     image-dependent tensor passes the numerator through.
   - attention: softmax(QK^T)V (or scaled_dot_product_attention) -> the value path with the
     gate cut: the reconstruction over N query tokens is mapped to the M value tokens
     (identity if N == M; adaptive average pooling between the token grids when both counts
     factor into spatial sizes, e.g. spatial-reduction attention; else the token mean).
   - view/reshape/flatten/squeeze -> reshape back; permute/transpose -> inverse; expand -> sum;
     select/slice -> scatter into zeros; cat/stack -> split/unbind; split/chunk/unbind -> cat
     (zeros for unused pieces); pad -> the crop that undoes it; roll -> roll back;
     pixel_(un)shuffle -> its inverse; dropout/clone/contiguous/casts -> identity.
   - a level feature computed off the path to the bottleneck (DPN's relu(cat(dual paths)))
     is obtained by replaying its side branch forward on the reconstructions it reads (norms
     there get own parameters as well).
   - norms and activations *before* the encoder's first weight are skipped, so that
     ``rec_image`` is raw (no norm or activation after the last transposed weight).
   - anything else raises :class:`GraphTransposeError` naming the op, its module and the
     encoder.
3. Sizes that depend on the input (output paddings, upsampling sizes, reshape targets, split
   sizes) are sympy expressions of the input sizes; they are lowered once into plain Python
   integer instructions (no generated source) and evaluated (and cached) per input shape.
   The forward is a loop of plain tensor operations: no FX or export at forward time, and it
   runs under ``torch.compile(fullgraph=True)``.

Tied means tied: the decoder reads the encoder's weight tensors at every forward (the same
``Parameter`` objects; they are not registered in the decoder, whose ``state_dict`` holds only
its own biases, norms and heads). With ``variational=True`` (the VAE baseline) the decoder
instead owns clones of those weights and a :class:`VariationalBottleneck`.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import ShapeError
from . import _graph_steps as S
from ._graph_blueprint import Blueprint, build_blueprint
from ._graph_build import GraphTransposeError
from ._graph_cache import BlueprintCache, signature
from ._graph_pickle import dump_program, load_program
from ._graph_plan import PlanError
from .base import ReconstructionOutput
from .variational import VariationalBottleneck

__all__ = [
    "GraphTiedDecoder",
    "GraphTransposeError",
    "PlanError",
    "clear_trace_cache",
    "trace_cache_info",
]

_CONV_1X1 = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


class GraphTiedDecoder(nn.Module):
    """Reconstructs the input from an encoder's bottleneck with the transposed encoder graph.

    Args:
        encoder: the encoder whose weights are transposed (not modified: no hook, attribute or
            state-dict change is left behind).
        example_input: (1 or 2, C, *spatial) at a reference size (2D or 3D). The trace's
            assumptions at that size bound the sizes the decoder serves (e.g. a level that is
            1 pixel wide there stays 1 pixel wide); choose a size divisible by the encoder's
            total stride at which every level is at least 2 pixels wide.
        encode: ``encode(encoder, x)`` -> the level features, shallowest first, bottleneck
            last (default ``list(encoder(x))``, the smp convention).
        mask_classes: build the ``rec_mask`` head: a 1x1 conv of its own on the shallowest
            computed level's reconstruction, its logits upsampled (bilinear/trilinear) to the
            input size when that level is not at stride 1. None: no head.
        variational: the VAE baseline: the same structure, but the decoder owns clones of the
            encoder's weights (registered parameters) and a :class:`VariationalBottleneck` on
            its input; the output's ``kl`` is set.
        cache: reuse the trace of an encoder with the same structure (see
            :func:`trace_cache_info`); False traces this encoder afresh (for an encoder or
            ``encode`` whose graph depends on state the structural signature does not see).

    Raises:
        TypeError: ``encoder`` is not a module, or it cannot be traced.
        ValueError: a bad ``example_input`` / ``mask_classes``, or levels the decoder cannot key.
        GraphTransposeError: an op of the encoder without a transposition rule.

    Example:
        >>> from segmentation_models_pytorch.encoders import get_encoder
        >>> enc = get_encoder("resnet18", in_channels=3, depth=5, weights=None)
        >>> dec = GraphTiedDecoder(enc, torch.randn(1, 3, 64, 64), mask_classes=2)
        >>> x = torch.randn(4, 3, 96, 64)
        >>> out = dec(enc(x)[-1], x.shape)
        >>> out.rec_image.shape, out.rec_mask.shape, out.levels[32].shape
        (torch.Size([4, 3, 96, 64]), torch.Size([4, 2, 96, 64]), torch.Size([4, 512, 3, 2]))
    """

    def __init__(
        self,
        encoder: nn.Module,
        example_input: torch.Tensor,
        *,
        encode: Callable[[nn.Module, torch.Tensor], list[torch.Tensor]] | None = None,
        mask_classes: int | None = None,
        variational: bool = False,
        cache: bool = True,
    ) -> None:
        super().__init__()
        _check_args(encoder, example_input, mask_classes, variational, cache)
        bp = _blueprint(encoder, example_input, encode, cache)
        self.spatial_dims = example_input.ndim - 2
        self.in_channels = int(example_input.shape[1])
        self.encoder_name = bp.encoder_name
        self.variational = variational
        self._plan = bp.plan
        self._plans: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._steps = bp.steps
        self._program_slots = bp.n_slots
        self._bottleneck_slot = bp.bottleneck_slot
        self._input_slot = bp.input_slot
        self._level_slots = list(bp.level_slots)
        self._level_shapes = list(bp.level_shapes)
        self._reductions = list(bp.reductions)
        self._channels = list(bp.channels)

        param = next(iter(encoder.parameters()), None)
        device = example_input.device
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        self.biases = nn.ParameterDict(
            {
                k: nn.Parameter(torch.zeros(c, device=device, dtype=dtype))
                for k, c in bp.biases.items()
            }
        )
        norms = {k: copy.deepcopy(m) for k, m in bp.norms.items()}
        self.norms = nn.ModuleDict(norms).to(device=device, dtype=dtype)
        self._const_specs = bp.consts
        self._sources, self._weight_keys, own = self._bind_constants(encoder, bp)
        self.weights = nn.ParameterDict(own) if variational else None
        self.bottleneck_vae = None
        if variational:
            vae = VariationalBottleneck(self._channels[-1], self.spatial_dims)
            self.bottleneck_vae = vae.to(device=device, dtype=dtype)
        self.mask_head = None
        if mask_classes is not None:
            head = _CONV_1X1[self.spatial_dims](self._channels[0], mask_classes, kernel_size=1)
            self.mask_head = head.to(device=device, dtype=dtype)

    def _bind_constants(
        self, encoder: nn.Module, bp: Blueprint
    ) -> tuple[list, list, dict[str, nn.Parameter]]:
        """Where each constant is read at forward time: (module, attribute) of the encoder for
        parameters and buffers (not registered here), a non-persistent buffer for lifted
        constants; with ``variational``, clones of the parameters owned by the decoder."""
        sources: list[tuple[nn.Module, str] | None] = []
        keys: list[str | None] = []
        own: dict[str, nn.Parameter] = {}
        for i, spec in enumerate(bp.consts):
            source, key = None, None
            if spec.kind in ("parameter", "buffer"):
                module_path, _, attr = spec.source.path.rpartition(".")
                source = (encoder.get_submodule(module_path), attr)
                if spec.kind == "parameter" and self.variational:
                    key = _key(spec.source.path, own)
                    own[key] = nn.Parameter(getattr(*source).detach().clone())
            elif spec.kind == "constant":
                self.register_buffer(f"const_{i}", bp.constants[i].clone(), persistent=False)
            sources.append(source)
            keys.append(key)
        return sources, keys, own

    # --- pickling (torch.save, pickle, deepcopy) -------------------------------------------------
    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_program_bytes"] = dump_program((state.pop("_steps"), state.pop("_const_specs")))
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        state = dict(state)
        state["_steps"], state["_const_specs"] = load_program(state.pop("_program_bytes"))
        super().__setstate__(state)

    # --- description -----------------------------------------------------------------------------
    @property
    def reductions(self) -> list[int]:
        """Strides of the levels the decoder outputs (computed levels only, bottleneck last)."""
        return list(self._reductions)

    @property
    def level_channels(self) -> dict[int, int]:
        """Channels of each output level, keyed by reduction."""
        return dict(zip(self._reductions, self._channels))

    def tied_parameters(self) -> dict[str, nn.Parameter]:
        """The encoder parameters this decoder reads, by their path in the encoder (empty when
        ``variational``: the decoder then owns clones)."""
        if self.variational:
            return {}
        return {
            self._const_specs[i].source.path: getattr(*self._sources[i])
            for i, spec in enumerate(self._const_specs)
            if spec.kind == "parameter"
        }

    def extra_repr(self) -> str:
        return (
            f"encoder={self.encoder_name}, steps={len(self._steps)}, "
            f"reductions={self._reductions}, tied={not self.variational}"
        )

    # --- forward ---------------------------------------------------------------------------------
    def _plan_for(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        plan = self._plans.get(shape)
        if plan is None:
            plan = self._plan.evaluate(shape)
            self._plans[shape] = plan
        return plan

    def _constants(self, plan: tuple[int, ...]) -> list[torch.Tensor | None]:
        consts: list[torch.Tensor | None] = []
        state = S.RunState([], plan, consts, self)
        for i, spec in enumerate(self._const_specs):
            if spec.kind == "parameter" and self.weights is not None:
                consts.append(self.weights[self._weight_keys[i]])
            elif spec.kind in ("parameter", "buffer"):
                module, attr = self._sources[i]
                consts.append(getattr(module, attr))
            elif spec.kind == "constant":
                consts.append(getattr(self, f"const_{i}"))
            else:
                args = S._resolve(spec.args, None, state)
                kwargs = {k: S._resolve(v, None, state) for k, v in spec.kwargs}
                consts.append(spec.op(*args, **kwargs))
        return consts

    def forward(
        self,
        bottleneck: torch.Tensor,
        image_shape: Sequence[int],
        *,
        image: bool = True,
        mask: bool = True,
    ) -> ReconstructionOutput:
        """Reconstruct from ``bottleneck`` for an input of ``image_shape`` (B, C, *spatial).

        ``mask=False`` skips the ``rec_mask`` head; ``image=False`` returns no ``rec_image``
        (the transposed graph still runs to the input: its last levels need the same steps).

        Returns:
            levels r_k by reduction (each with the channels and size of the encoder's feature
            at that level for this input), ``rec_image`` (B, in_channels, *spatial, raw),
            ``rec_mask`` when a head was built, ``kl`` when variational.

        Raises:
            ShapeError: the bottleneck does not have the shape the encoder gives for
                ``image_shape``.
            PlanError: ``image_shape`` has the wrong rank or channels, or is a size that the
                trace cannot serve.
        """
        shape = tuple(int(s) for s in image_shape)
        plan = self._plan_for(shape)
        expected = tuple(plan[i] for i in self._level_shapes[-1])
        if tuple(bottleneck.shape) != expected:
            raise ShapeError(
                f"bottleneck has shape {tuple(bottleneck.shape)}, but encoder "
                f"{self.encoder_name} gives {expected} for image_shape {shape}.",
                tuple(bottleneck.shape),
                str(expected),
            )
        kl = None
        z = bottleneck
        if self.bottleneck_vae is not None:
            z, kl = self.bottleneck_vae(bottleneck)
        env: list[torch.Tensor | None] = [None] * self._program_slots
        env[self._bottleneck_slot] = z
        state = S.RunState(env, plan, self._constants(plan), self)
        for step in self._steps:
            step.run(state)
        levels = {red: env[slot] for red, slot in zip(self._reductions, self._level_slots)}
        levels[self._reductions[-1]] = z
        rec_image = env[self._input_slot] if image else None
        rec_mask = None
        if mask and self.mask_head is not None:
            rec_mask = self.mask_head(levels[self._reductions[0]])
            if tuple(rec_mask.shape[2:]) != shape[2:]:
                rec_mask = F.interpolate(
                    rec_mask,
                    size=shape[2:],
                    mode=_LINEAR_MODE[self.spatial_dims],
                    align_corners=False,
                )
        return ReconstructionOutput(levels=levels, rec_image=rec_image, rec_mask=rec_mask, kl=kl)


# --- the trace cache ---------------------------------------------------------------------------
_CACHE = BlueprintCache(maxsize=8)


def trace_cache_info() -> dict[str, int]:
    """The trace cache's hits, misses, size and maxsize.

    Tracing and transposing an encoder takes seconds; a decoder for an encoder with the same
    structure (module classes and hyper-parameters, parameter and buffer names, shapes, dtypes;
    the same reference input shape and ``encode``) reuses the result, bound to its own
    encoder's tensors. The cache keeps the 8 most recently used encoder structures and never
    holds an encoder's tensors.
    """
    return _CACHE.info()


def clear_trace_cache() -> None:
    """Forget every cached trace (and reset the counts of :func:`trace_cache_info`)."""
    _CACHE.clear()


def _blueprint(
    encoder: nn.Module,
    example_input: torch.Tensor,
    encode: Callable[[nn.Module, torch.Tensor], list[torch.Tensor]] | None,
    cache: bool,
) -> Blueprint:
    """The cached blueprint of an encoder of the same structure, or a new one (then cached)."""
    key = signature(encoder, example_input, encode) if cache else None
    bp = _CACHE.get(key) if key is not None else None
    if bp is not None:
        if bp.fallback:  # the trace's warning, as on a fresh trace
            warnings.warn(bp.fallback, stacklevel=3)
        return bp
    bp = build_blueprint(encoder, example_input, encode)
    if key is not None:
        _CACHE.put(key, bp)
    return bp


# --- construction helpers ----------------------------------------------------------------------
def _check_args(
    encoder: object,
    example_input: object,
    mask_classes: object,
    variational: object,
    cache: object,
) -> None:
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be an nn.Module, got {type(encoder).__name__}.")
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(
            f"example_input must be a tensor (B, C, *spatial), got {type(example_input).__name__}."
        )
    if example_input.ndim not in (3, 4, 5) or example_input.shape[0] not in (1, 2):
        raise ValueError(
            f"example_input must have shape (1 or 2, C, *spatial) with 1 to 3 spatial dims, "
            f"got {tuple(example_input.shape)}."
        )
    if mask_classes is not None and (
        isinstance(mask_classes, bool) or not isinstance(mask_classes, int) or mask_classes < 1
    ):
        raise ValueError(f"mask_classes must be None or a positive int, got {mask_classes!r}.")
    for flag, value in (("variational", variational), ("cache", cache)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be a bool, got {type(value).__name__}.")


def _key(path: str, table: dict) -> str:
    key = path.replace(".", "_")
    base, i = key, 2
    while key in table:
        key, i = f"{base}_{i}", i + 1
    return key
