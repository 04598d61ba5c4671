"""The branches of :class:`~dsplug.wrapper.DeepSupervised`: the modules it adds to the model
(the tied decoder, the 1x1 alignments, the side heads) and the passes of ``ds(x, y)`` and
``ds.unlabeled(x)`` that run them (the X pass with its decoder levels, the G pass, the
reconstructions), on the part of the batch and at the scale ``aux_fraction`` / ``aux_scale`` set.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._checks import UpdateWatch
from .adapters import DecoderStage, ModelAdapter
from .cost import AuxEvery, pool_mean, scaled_batch
from .hooks import FeatureHooks
from .labels import dense_target, mask_as_input
from .losses import DeepSupervisionLoss
from .modes import ModeSpec
from .options import Balance, LabelMode
from .output import DSOutput
from .tied.base import ReconstructionOutput

__all__ = ["Branches"]


class Branches:
    """Mixin of :class:`~dsplug.wrapper.DeepSupervised`: builds and runs its branches (it
    reads the wrapper's state, set in its ``__init__``)."""

    model: nn.Module
    spec: ModeSpec
    criterion: DeepSupervisionLoss
    stages: list[DecoderStage]
    reductions: list[int]
    heads: nn.ModuleDict
    align: nn.ModuleDict
    ae_encoder: nn.Module | None
    reconstruction: nn.Module | None
    aux_fraction: float
    label_mode: LabelMode
    ignore_index: int | None
    training: bool
    _adapter: ModelAdapter
    _aux_pool: int
    _aux_every: AuxEvery
    _hooks: FeatureHooks | None
    _batch_norms: list[_BatchNorm]
    _update_watch: UpdateWatch

    # --- the modules ---------------------------------------------------------------------------
    def _build_reconstruction(self, adapter: ModelAdapter, spec: ModeSpec) -> None:
        self.ae_encoder: nn.Module | None = None
        self.reconstruction: nn.Module | None = None
        self.align = nn.ModuleDict()
        if spec.reconstruction is None:
            return
        encoder = adapter.encoder()
        if spec.reconstruction == "ae":
            # U-Net-Auto: an independent autoencoder, its own copy of the encoder.
            self.ae_encoder = copy.deepcopy(encoder)
            encoder = self.ae_encoder
        self.reconstruction = adapter.build_reconstruction_decoder(
            encoder,
            mask_classes=adapter.classes if spec.reconstruct_mask else None,
            variational=spec.reconstruction == "vae",
        )
        paper = self.criterion.balance == Balance.PAPER
        # the tied decoders' `unit_gain` (transpose_gain) is a departure: the paper's literal
        # form transposes plainly
        self.reconstruction.unit_gain = not paper
        if spec.aligns_features:
            # y_k and r_k(G) come from different decoders: their channels need not mean the same
            # thing even where the counts match, so by default every compared level has a
            # learned 1x1 map; the paper's literal form maps only where the counts differ.
            targets = self.reconstruction.level_channels
            conv = nn.Conv2d if adapter.spatial_dims == 2 else nn.Conv3d
            for stage in self.stages:
                target_channels = targets.get(stage.reduction, 0)
                if target_channels and not (paper and target_channels == stage.channels):
                    self.align[str(stage.reduction)] = conv(
                        stage.channels, target_channels, kernel_size=1
                    )

    def _build_heads(self, spec: ModeSpec) -> None:
        self.heads = nn.ModuleDict()
        if spec.heads is None:
            return
        conv = nn.Conv2d if self._adapter.spatial_dims == 2 else nn.Conv3d
        for stage in self.stages:
            if stage.reduction > 1:
                self.heads[str(stage.reduction)] = conv(
                    stage.channels, self._adapter.classes, kernel_size=1
                )

    # --- the passes ----------------------------------------------------------------------------
    def _tapped(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """model(x) and the decoder levels it computed."""
        if not self.stages:
            return self.model(x), {}
        temporary = self._hooks is None  # eval mode: hooks only for this call
        self._attach_hooks()
        hooks = self._hooks
        hooks.start()
        try:
            logits = self.model(x)
            levels = hooks.pop(x.device)
        finally:
            hooks.stop()
            if temporary:
                self._detach_hooks()
        return logits, dict(zip(self.reductions, levels))

    @contextmanager
    def _mask_statistics(self) -> Iterator[None]:
        """BatchNorm in the G pass: its own batch statistics, running stats untouched."""
        if not self._batch_norms:
            self._batch_norms = [m for m in self.modules() if isinstance(m, _BatchNorm)]
        saved = [(m, m.training, m.track_running_stats) for m in self._batch_norms]
        for m in self._batch_norms:
            m.training = True
            m.track_running_stats = False
        try:
            yield
        finally:
            for m, training, tracking in saved:
                m.training = training
                m.track_running_stats = tracking

    def _reconstruct(
        self, bottleneck: torch.Tensor, x: torch.Tensor, *, image: bool, mask: bool
    ) -> ReconstructionOutput:
        return self.reconstruction(bottleneck, tuple(x.shape), image=image, mask=mask)

    def _aux_index(self, y: torch.Tensor) -> torch.Tensor | None:
        """The images the auxiliary branches run on (``aux_fraction`` of the batch, those with
        foreground first, then in batch order), or None for all. No device sync."""
        batch = y.shape[0]
        count = max(1, math.ceil(self.aux_fraction * batch - 1e-9))
        if count >= batch:
            return None
        target = dense_target(y, self.label_mode, self._adapter.spatial_dims)
        foreground = target > 0 if self.label_mode == LabelMode.MULTICLASS else target > 0.5
        if self.ignore_index is not None:
            foreground = foreground & (target != self.ignore_index)
        empty = (~foreground.flatten(1).any(dim=1)).to(torch.uint8)
        return torch.argsort(empty, stable=True)[:count]

    def _anchored(self, logits: torch.Tensor) -> torch.Tensor:
        """Under DDP, ``logits`` plus 0 x every parameter of the wrapper's own: DDP expects a
        gradient for each parameter it holds, also on steps that skip the auxiliary branches."""
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return logits
        own = [p.sum() for n, p in self.named_parameters() if not n.startswith("model.")]
        return logits + 0 * torch.stack(own).sum() if own else logits

    def _x_bottleneck(self, x: torch.Tensor, features: dict[int, torch.Tensor]) -> torch.Tensor:
        """The bottleneck the tied decoder reconstructs X from: the X pass's, or (``ae``) the
        autoencoder's; at ``aux_scale`` < 1 the encoder's on the pooled ``x`` (batch
        statistics, as the G pass)."""
        a = self._adapter
        if self.spec.reconstruction == "ae":
            return a.encode(self.ae_encoder, x)[-1]
        if self._aux_pool == 1:
            return features[self.reductions[-1]]
        with self._mask_statistics():
            return a.encode(a.encoder(), x)[-1]

    def _supervised_forward(
        self, x: torch.Tensor, y: torch.Tensor, kind: str = "labelled"
    ) -> DSOutput:
        spec, a = self.spec, self._adapter
        weight = self._aux_every.weight(kind, self.training and torch.is_grad_enabled())
        if not self.criterion.auxiliary_active or weight == 0:
            # the schedule's factor is 0, or aux_every skips this step: L_image alone, at the
            # cost of mode `none`
            if weight == 0:  # a step that trains none of the wrapper's parameters by design
                self._update_watch.reset()
            out = DSOutput(logits=self._anchored(self.model(x)), image=x, features={})
            out.aux_weight = weight
            return out
        logits, features = self._tapped(x)
        out = DSOutput(logits=logits, image=x, features=features, aux_weight=weight)
        if spec.heads is not None:
            out.aux_logits = {int(r): head(features[int(r)]) for r, head in self.heads.items()}
        if not (spec.mask_pass or spec.reconstruction):
            return out
        index = self._aux_index(y)
        if index is not None:  # the auxiliary branches on part of the batch
            out.aux_index = index
            x, y = x.index_select(0, index), y.index_select(0, index)
            features = {r: f.index_select(0, index) for r, f in features.items()}
        if self._aux_pool > 1:  # the branches on X and G pooled; the student side pooled alike
            x, y = scaled_batch(x, y, self._aux_pool, self.label_mode, a.classes, self.ignore_index)
            out.aux_image, out.aux_target = x, y
            features = {r: pool_mean(f, self._aux_pool) for r, f in features.items()}
        g = mask_as_input(
            y, self.label_mode, a.classes, a.in_channels, a.spatial_dims, self.ignore_index
        ).to(dtype=x.dtype)
        bottleneck = self.reductions[-1]
        mask_bottleneck = None
        with self._mask_statistics():
            if spec.mask_pass:
                out.mask_logits, out.mask_features = self._tapped(g)
                mask_bottleneck = out.mask_features[bottleneck]
            if spec.reconstruct_mask:
                if spec.reconstruction == "ae":
                    mask_bottleneck = a.encode(self.ae_encoder, g)[-1]
                elif mask_bottleneck is None:
                    mask_bottleneck = a.encode(a.encoder(), g)[-1]
                rec_g = self._reconstruct(mask_bottleneck, g, image=False, mask=True)
                out.rec_mask, out.rec_features = rec_g.rec_mask, rec_g.levels
        if spec.reconstruction is None:
            return out
        rec_x = self._reconstruct(self._x_bottleneck(x, features), x, image=True, mask=False)
        out.rec_image = rec_x.rec_image
        if spec.reconstruction == "vae":
            out.kl = 0.5 * (rec_x.kl + rec_g.kl)
        if spec.aligns_features:
            out.aligned_features = {
                int(r): proj(features[int(r)]) for r, proj in self.align.items()
            }
        return out

    def _label_free_forward(self, x: torch.Tensor) -> DSOutput:
        """The branches of an unlabelled batch without a teacher: the model's output with its
        side outputs (up, down) or the tied decoder's reconstruction of X (the μ-Net modes)."""
        weight = self._aux_every.weight("unlabeled", self.training and torch.is_grad_enabled())
        if not self.criterion.auxiliary_active or weight == 0:
            if weight == 0:
                self._update_watch.reset()
            return DSOutput(logits=self.model(x), image=x, labeled=False, aux_weight=weight)
        logits, features = self._tapped(x)
        out = DSOutput(logits=logits, image=x, features=features, labeled=False)
        out.aux_weight = weight
        if self.spec.heads is not None:  # up, down: the side outputs' consistency
            out.aux_logits = {int(r): head(features[int(r)]) for r, head in self.heads.items()}
            return out
        if self._aux_pool > 1:
            x = out.aux_image = pool_mean(x, self._aux_pool)
        bottleneck = self._x_bottleneck(x, features)
        rec_x = self._reconstruct(bottleneck, x, image=True, mask=False)
        out.rec_image = rec_x.rec_image
        if self.spec.reconstruction == "vae":
            out.kl = rec_x.kl
        return out
