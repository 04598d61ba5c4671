"""Rules for norms: a fresh norm of the same kind over the same channels, with the decoder's own
parameters (a norm before the encoder's first weight is skipped: ``rec_image`` stays raw).
"""

from __future__ import annotations

from torch import fx, nn

from . import _graph_ops as O
from . import _graph_steps as S
from ._rule_protocol import TransposeContext
from ._rules import Rule, rule_table

__all__ = ["RULES", "norm", "own_norm"]


def norm(t: TransposeContext, node: fx.Node, name: str) -> None:
    """A norm -> a fresh norm of the same kind (skipped before the first weight)."""
    x = O.bind(node)["input"]
    dst = t.need(node, x, "input")
    src = t.out_slot(node)
    if not t.after_weight(x):  # before the encoder's first weight: the output stays raw
        t.add(S.FanOut(src, node.name, targets=((dst, 1.0, None),)))
        return
    t.add(S.NormT(src, node.name, dst=dst, norm=own_norm(t, node, name)))


def own_norm(t: TransposeContext, node: fx.Node, name: str) -> str:
    """A fresh norm of the same kind as ``node`` (the decoder's own parameters); its key."""
    a = O.bind(node)
    shape = O.val(a["input"]).shape
    channels = int(shape[1]) if len(shape) > 1 else 1
    affine = a.get("weight") is not None
    eps = float(a.get("eps", 1e-5) or 1e-5)
    stats = {
        "momentum": float(a.get("momentum") or 0.1),
        "affine": affine,
        "track_running_stats": a.get("running_mean") is not None,
    }
    if name in {"layer_norm", "native_layer_norm", "rms_norm"}:
        normalized = tuple(int(s) for s in a["normalized_shape"])
        if name == "rms_norm":
            module: nn.Module = nn.RMSNorm(normalized, eps=a.get("eps"), elementwise_affine=affine)
        else:
            bias = a.get("bias") is not None
            module = nn.LayerNorm(normalized, eps=eps, elementwise_affine=affine, bias=bias)
    elif name in {"group_norm", "native_group_norm"}:
        groups = int(a.get("num_groups") or a.get("group"))
        module = nn.GroupNorm(groups, channels, eps=eps, affine=affine)
    elif name == "instance_norm":
        kind = {3: nn.InstanceNorm1d, 4: nn.InstanceNorm2d, 5: nn.InstanceNorm3d}[len(shape)]
        module = kind(channels, eps=eps, **stats)
    else:
        kind = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}
        module = kind[len(shape)](channels, eps=eps, **stats)
    key = t.unique_key(t.module_path(node) or node.name, t.norms)
    t.norms[key] = module
    return key


RULES: dict[str, Rule] = rule_table(
    (O.NORMS, norm),
)
