"""Trace an encoder once with ``torch.export`` (symbolic batch and spatial sizes).

The trace is the raw material of :class:`dsplug.tied.graph.GraphTiedDecoder`: an FX graph of
ATen operations whose tensor shapes are sympy expressions of the input's sizes, plus where each
lifted parameter, buffer and constant lives in the encoder. Tracing leaves the encoder as it was:
its train/eval flags are restored, no hook or attribute is left behind.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.export import Dim, ExportedProgram, export
from torch.export.graph_signature import InputKind, OutputKind

from ._torch_private import quiet_shape_solver, shape_guards

__all__ = ["EncodeFn", "EncoderTrace", "TensorSource", "trace_encoder"]

EncodeFn = Callable[[nn.Module, torch.Tensor], "list[torch.Tensor]"]

_PREFIX = "encoder."


def default_encode(encoder: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """``list(encoder(x))``: the smp convention (features shallowest first)."""
    return list(encoder(x))


class _EncodeModule(nn.Module):
    """Holds the encoder as a child so that export names its tensors ``encoder.<path>``."""

    def __init__(self, encoder: nn.Module, encode: EncodeFn) -> None:
        super().__init__()
        self.encoder = encoder
        self._encode = encode

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self._encode(self.encoder, x))


@dataclass(frozen=True)
class TensorSource:
    """Where a lifted graph input lives: ``kind`` is "parameter", "buffer" or "constant"."""

    kind: str
    path: str  # dotted path inside the encoder (parameters, buffers) or the constant's name


@dataclass
class EncoderTrace:
    """One export of ``encode(encoder, x)`` at a reference input size.

    Attributes:
        graph: the FX graph (ATen ops; every tensor node has ``meta["val"]`` with a shape whose
            entries are ints or SymInts of the input's sizes).
        input_node: the placeholder of the image.
        outputs: the encoder's level outputs in order (FX nodes; None for a non-tensor output).
        sources: placeholder name -> where that parameter/buffer/constant lives.
        constants: lifted tensor constants by name.
        range_constraints: symbol -> allowed value range (from export).
        guards: every assumption the trace made about the sizes (sympy booleans of the input's
            symbols, e.g. ``Ne(H // 32, 1)``); a new input size must satisfy all of them.
        dynamic: False when only a static trace succeeded (the decoder then supports the
            reference size only).
        encoder_name: the encoder's class name, for error messages.
        fallback: the warning given when the trace could not be fully symbolic, or "".
    """

    graph: fx.Graph
    input_node: fx.Node
    outputs: list[fx.Node | None]
    sources: dict[str, TensorSource]
    constants: dict[str, torch.Tensor]
    range_constraints: dict = field(default_factory=dict)
    guards: list = field(default_factory=list)
    dynamic: bool = True
    encoder_name: str = ""
    fallback: str = ""


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own flag afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _export(wrapper: nn.Module, x: torch.Tensor, dims: list[int]) -> ExportedProgram:
    shapes = ({d: Dim.AUTO for d in dims},) if dims else None
    return export(wrapper, (x,), dynamic_shapes=shapes, strict=False)


def trace_encoder(
    encoder: nn.Module, example_input: torch.Tensor, encode: EncodeFn | None = None
) -> EncoderTrace:
    """Export ``encode(encoder, x)`` with symbolic batch and spatial sizes.

    Args:
        encoder: the encoder (left unchanged).
        example_input: (B, C, *spatial) at a reference size; B = 1 is traced as 2, so that the
            batch size stays symbolic.
        encode: how to get the level features (default ``list(encoder(x))``).

    Returns:
        The trace. When the symbolic export fails, one with a symbolic batch only is tried, then
        a static one; a warning then says which sizes the decoder will support.

    Raises:
        TypeError: when even a static export fails; the message names the encoder and the cause.
    """
    encode = encode or default_encode
    x = example_input.detach()
    if x.shape[0] < 2:
        x = x.expand(2, *x.shape[1:]).clone()
    wrapper = _EncodeModule(encoder, encode)
    name = type(encoder).__name__
    attempts = [
        ([0, *range(2, x.ndim)], ""),
        ([0], f"only the reference spatial size {tuple(x.shape[2:])}"),
        ([], f"only the reference input shape {tuple(x.shape)}"),
    ]
    first_error: Exception | None = None
    with _eval_mode(encoder), quiet_shape_solver():
        for dims, limit in attempts:
            try:
                program = _export(wrapper, x, dims)
            except Exception as error:  # any export failure: try a less symbolic trace
                first_error = first_error or error
                continue
            fallback = ""
            if limit:
                fallback = (
                    f"Encoder {name} could not be traced with symbolic sizes "
                    f"({type(first_error).__name__}: {str(first_error)[:300]}); the tied "
                    f"decoder supports {limit}."
                )
                warnings.warn(fallback, stacklevel=5)
            return _from_program(program, name, dynamic=bool(dims), fallback=fallback)
    raise TypeError(
        f"GraphTiedDecoder could not trace encoder {name} with torch.export at input shape "
        f"{tuple(x.shape)}: {type(first_error).__name__}: {first_error}"
    ) from first_error


def _from_program(
    program: ExportedProgram, name: str, dynamic: bool, fallback: str = ""
) -> EncoderTrace:
    signature = program.graph_signature
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    sources: dict[str, TensorSource] = {}
    input_node = None
    for spec in signature.input_specs:
        arg_name = spec.arg.name
        if spec.kind == InputKind.USER_INPUT:
            input_node = placeholders[arg_name]
        elif spec.kind == InputKind.PARAMETER:
            sources[arg_name] = TensorSource("parameter", _strip(spec.target))
        elif spec.kind == InputKind.BUFFER:
            sources[arg_name] = TensorSource("buffer", _strip(spec.target))
        elif spec.kind in (InputKind.CONSTANT_TENSOR, InputKind.CUSTOM_OBJ):
            sources[arg_name] = TensorSource("constant", spec.target)
        else:  # pragma: no cover - token inputs do not occur without side effects
            raise TypeError(f"Encoder {name}: unsupported exported input kind {spec.kind}.")
    if input_node is None:  # pragma: no cover - export always has the user input
        raise TypeError(f"Encoder {name}: the exported graph has no image input.")
    output_node = next(n for n in program.graph.nodes if n.op == "output")
    returned = list(output_node.args[0])
    outputs: list[fx.Node | None] = []
    for spec, value in zip(signature.output_specs, returned):
        if spec.kind != OutputKind.USER_OUTPUT:
            continue
        outputs.append(value if isinstance(value, fx.Node) else None)
    constants = {k: v for k, v in program.constants.items() if isinstance(v, torch.Tensor)}
    guards = shape_guards(input_node.meta["val"])
    return EncoderTrace(
        graph=program.graph,
        input_node=input_node,
        outputs=outputs,
        sources=sources,
        constants=constants,
        range_constraints=dict(program.range_constraints),
        guards=guards,
        dynamic=dynamic,
        encoder_name=name,
        fallback=fallback,
    )


def _strip(target: str) -> str:
    return target[len(_PREFIX) :] if target.startswith(_PREFIX) else target
