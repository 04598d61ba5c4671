"""DeepSupervised: adds a deep-supervision strategy to a segmentation model, removably."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._branches import Branches
from ._checks import ShapeError, UpdateWatch, check_divisible, check_finite
from .adapters import adapter_for
from .cost import AuxEvery, check_aux_every, check_aux_scale
from .hooks import FeatureHooks
from .labels import check_label_mode, check_target
from .losses import LOSSES, LossBreakdown, LossWeights, epoch_progress
from .modes import mode_spec
from .nets.freeze import set_frozen, set_norms_training
from .options import LabelMode, Mode
from .output import DSOutput
from .semi import CONFIDENCE, flip_noise, pseudo_target

__all__ = ["DeepSupervised"]

SegLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class DeepSupervised(Branches, nn.Module):
    """Wrap ``model`` so that it trains with a deep-supervision strategy (eq. 6, 7, 11-13).

    ``ds(x, y)`` returns a :class:`DSOutput` with every branch the mode needs (in train and
    eval); ``ds.loss(out, y)`` returns a :class:`LossBreakdown`; ``ds(x)`` returns exactly
    ``model(x)`` (in train and eval); ``ds.strip()`` returns the original model object with its
    hooks removed. The wrapper stands in for the model: an attribute it does not own is looked
    up on the model (``ds.encoder``, ``ds.freeze_encoder()``, ``ds.save_pretrained(...)``).

    Weights: ``ds.strip().state_dict()`` (or ``ds.model.state_dict()``) is the bare model's
    and loads strictly into a fresh model; a bare model's weights load back with
    ``ds.model.load_state_dict(...)`` (or into the model before wrapping). ``ds.state_dict()``
    adds the wrapper's own parameters under their module names and the model's under
    ``model.``. The wrapper pickles (``torch.save(ds)``, ``copy.deepcopy(ds)``).

    Build the optimiser from ``ds.parameters()`` after wrapping: the wrapper has parameters of
    its own (a warning says so once when an optimiser step leaves all of them unchanged).

    Args:
        model: a supported segmentation model (see ``dsplug.adapters``).
        mode: ``none``, ``deep``, ``auto``, ``seg``, ``rec``, ``hyb``, ``up``, ``down`` or ``vae``.
        weights: a preset name (``equal``, ``brats``, ``cardiac``, ``spleen``, ``liver``), a
            mapping of :class:`LossWeights` fields, or a LossWeights.
        label_mode: ``binary``, ``multilabel`` or ``multiclass``; None (default): what the
            model's output channels imply, ``binary`` for 1 and ``multiclass`` for more.
        schedule: the deep-supervision schedule, ``constant``, ``linear`` or ``cosine``;
            default ``cosine`` with ``balance="auto"`` and ``constant`` with ``"paper"``.
        validate: check every batch (shapes, finite values, label values). The value checks
            read the tensors once per step and are skipped inside ``torch.compile``.
        balance: ``auto`` or ``paper`` (how the loss terms are summed, see ``dsplug.losses``).
        seg_loss: ``seg_loss(logits, target) -> scalar``: replaces the built-in segmentation
            loss in L_image and every mask term (e.g. ``smp.losses.DiceLoss``); the target is
            passed as the loss functions take it (float (B, C, *) for binary/multilabel,
            int64 (B, *) class indices for multiclass).
        ignore_index: a label value that every term reading labels ignores (a void label).
        aux_fraction: the share of each training batch that the auxiliary branches (the G
            pass, the reconstruction decoders) run on, images with foreground first, then in
            batch order (at least one image); 1.0: every image. Their cost scales with it.
        aux_scale: 1.0, 0.5 or 0.25: the auxiliary branches run on X and G pooled by
            1/aux_scale (targets pooled consistently, see ``dsplug.cost``); their terms compare
            with area-pooled seg logits and features. About aux_scale² of their cost.
        aux_every: k >= 1: the auxiliary branches run on every k-th training call (the first
            of each k), their terms weighted k; the other calls are mode ``none``'s step.
            None (default): the mode's default, 2 for ``hyb`` (nearly all of its gain at two
            thirds of its cost, see :func:`dsplug.cost.default_aux_every`), 1 for every other
            mode; ``aux_every=1`` is the paper's hyb (the branches on every call).

    Example:
        >>> ds = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="hyb")
        >>> x, y = torch.randn(2, 1, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
        >>> loss = ds.loss(ds(x, y), y)
        >>> loss.total.backward()
    """

    def __init__(
        self,
        model: nn.Module,
        mode: str = "hyb",
        *,
        weights: str | Mapping[str, object] | LossWeights = "equal",
        label_mode: str | None = None,
        schedule: str | None = None,
        validate: bool = True,
        balance: str = "auto",
        seg_loss: SegLoss | None = None,
        ignore_index: int | None = None,
        aux_fraction: float = 1.0,
        aux_scale: float = 1.0,
        aux_every: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(aux_fraction, bool) or not (
            isinstance(aux_fraction, int | float) and 0 < aux_fraction <= 1
        ):
            raise ValueError(f"aux_fraction must be a number in (0, 1], got {aux_fraction!r}.")
        self.aux_fraction = float(aux_fraction)
        spec = mode_spec(mode)
        self._aux_pool = check_aux_scale(aux_scale, spec)
        self._aux_every = AuxEvery(check_aux_every(aux_every, spec))
        if isinstance(model, DeepSupervised):
            raise TypeError(
                f"The model is already wrapped (DeepSupervised, mode={model.mode.value!r}): wrap "
                "the bare model (ds.model), or change the strategy of the wrapper you have."
            )
        adapter = adapter_for(model)
        adapter.check_supported(spec.name)
        if label_mode is None:
            label_mode = "binary" if adapter.classes == 1 else "multiclass"
        self.model = model
        self.spec = spec
        self.validate = validate
        self._adapter = adapter
        self.criterion = LOSSES[spec.name](
            weights,
            label_mode,
            schedule,
            adapter.spatial_dims,
            balance=balance,
            seg_loss=seg_loss,
            ignore_index=ignore_index,
        )
        # balance="auto" measures each auxiliary gradient on the model's own encoder, read
        # afresh at each measurement (freeze / unfreeze / load_state_dict(assign=True))
        self.criterion.attach(self._shared_parameters)
        check_label_mode(self.criterion.label_mode, adapter.classes, type(model).__name__)
        self.stages = adapter.decoder_stages() if spec.features else []
        self.reductions = [s.reduction for s in self.stages]
        self._check_level_weights()
        self._build_reconstruction(adapter, spec)
        self._build_heads(spec)
        self._match_model_placement(self.align, self.heads, self.reconstruction)
        self._hooks: FeatureHooks | None = None
        self._batch_norms: list[_BatchNorm] = []
        self._stripped = False
        self._encoder_frozen = False  # by freeze_encoder() here, for models without their own
        self._update_watch = UpdateWatch()
        self.train(model.training)

    # --- construction ------------------------------------------------------------------------
    def _check_level_weights(self) -> None:
        weights = self.criterion.weights
        for name in ("omega", "sigma"):
            if name in self.criterion.used_fields():
                weights.level_weights(name, len(self.stages))

    def _shared_parameters(self) -> list[nn.Parameter]:
        """The trainable weights that L_image and the auxiliary terms share: the encoder's,
        or the whole model's when the encoder is frozen (``freeze_encoder()``)."""
        shared = [p for p in self._adapter.encoder().parameters() if p.requires_grad]
        return shared or [p for p in self.model.parameters() if p.requires_grad]

    def _match_model_placement(self, *modules: nn.Module | None) -> None:
        """Put modules built here on the model's device and floating dtype (the tied decoders
        register only their own parameters, so the encoder's are not touched)."""
        param = next((p for p in self.model.parameters() if p.is_floating_point()), None)
        if param is not None:
            for module in modules:
                if module is not None:
                    module.to(device=param.device, dtype=param.dtype)

    # --- public API ----------------------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        """The deep-supervision strategy."""
        return self.spec.name

    @property
    def ignore_index(self) -> int | None:
        """The label value every term reading labels leaves out (None: none); the loss's."""
        return self.criterion.ignore_index

    @property
    def label_mode(self) -> LabelMode:
        """``binary``, ``multilabel`` or ``multiclass``."""
        return self.criterion.label_mode

    @property
    def aux_every(self) -> int:
        """Every how many training calls the auxiliary branches run (1: every call)."""
        return self._aux_every.every

    def config(self) -> dict[str, object]:
        """Plain-typed wrapper configuration (mode, weights, label mode, balance, schedule).

        ``aux_every`` is there when it is not 1 (a hyb wrapper's default 2 included): a config
        without it ran the branches on every call (:func:`dsplug.cost.aux_every_of`).
        """
        return {
            "mode": self.mode.value,
            "weights": self.criterion.weights.to_dict(),
            "label_mode": self.label_mode.value,
            "balance": self.criterion.balance.value,
            "schedule": self.criterion.schedule.value,
            "pseudo_labels": self.criterion.pseudo_labels.value,
            # only when set: the configs (and resume checks) of earlier runs stay as they were
            **({"aux_fraction": self.aux_fraction} if self.aux_fraction != 1.0 else {}),
            **({"aux_scale": 1 / self._aux_pool} if self._aux_pool != 1 else {}),
            **({"aux_every": self._aux_every.every} if self._aux_every.every != 1 else {}),
        }

    def set_progress(self, progress: float) -> None:
        """Advance the deep-supervision schedule: 0 at the start of training, 1 at the end."""
        self.criterion.set_progress(progress)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Advance the schedule to 0-based ``epoch`` of ``epochs`` (progress 0 in the first
        epoch, 1 in the last: :func:`dsplug.losses.epoch_progress`), as the Trainer and the
        Lightning module do; call it at the start of each epoch of your own loop."""
        self.criterion.set_progress(epoch_progress(epoch, epochs))

    def set_weights(self, weights: str | Mapping[str, object] | LossWeights) -> None:
        """Change the loss weights (a preset name, a mapping or a LossWeights), e.g. between
        epochs; weights for terms this mode does not use raise an error."""
        self.criterion.set_weights(weights)
        self._check_level_weights()

    def loss(self, out: DSOutput, y: torch.Tensor | None = None) -> LossBreakdown:
        """The mode's loss of ``out`` (from ``ds(x, y)``) against the target ``y``; without
        ``y``, the label-free part of an unlabelled batch's (from ``ds.unlabeled(x)``)."""
        if not isinstance(out, DSOutput):
            raise TypeError(
                f"ds.loss(out, y) needs the DSOutput of ds(x, y), got {type(out).__name__}: "
                "call ds(x, y) (with the target) for the deep-supervised outputs; ds(x) alone "
                "returns the bare model's output."
            )
        return self.criterion(out, y)

    def unlabeled(
        self,
        x: torch.Tensor,
        teacher: Callable | None = None,
        *,
        noise: float = 0.1,
        confidence: float = CONFIDENCE,
    ) -> DSOutput:
        """The branches of an unlabelled batch (no mask), for ``ds.loss(out)`` without a target.

        With ``teacher`` (a :class:`dsplug.semi.EMATeacher`, or any callable returning logits),
        its confident predictions on ``x`` are a pseudo-mask G̃, and every branch of the mode
        runs on a perturbed X (Gaussian noise of ``noise`` x the image's sd, random flips; G̃
        flipped alike) with G̃ as its mask, as ``ds(x, G̃)`` would: the loss counts the
        pixels whose top probability is >= ``confidence`` only. Without a teacher, the μ-Net
        modes run the tied decoder on X alone (L_rei), ``up`` and ``down`` train their side
        outputs' consistency (URPC); modes with no label-free term refuse in one line.
        """
        if self._stripped:
            raise RuntimeError("This DeepSupervised was stripped; wrap the model again.")
        if self.validate:
            self._check_image(x)
        self._watch_updates()
        if teacher is not None:
            target, sure = pseudo_target(teacher(x), self.label_mode, confidence)
            x, dims = flip_noise(x, noise)
            if dims:  # class-index targets have no channel axis: flip the same spatial axes
                sure = torch.flip(sure, dims)
                target = torch.flip(
                    target, dims if target.dim() == x.dim() else [d - 1 for d in dims]
                )
            out = self._supervised_forward(x, target, "unlabeled")
            out.target, out.target_valid, out.labeled = target, sure, False
            return out
        if not self.criterion.label_free_terms:
            raise ValueError(
                f"Mode {self.mode.value!r} has no term that learns without a mask: pass a "
                "teacher (ds.unlabeled(x, teacher=dsplug.semi.EMATeacher(ds))), or use a μ-Net "
                "mode (seg, rec, hyb), whose tied decoder reconstructs unlabelled images, or "
                "up / down, whose side outputs learn to agree."
            )
        return self._label_free_forward(x)

    def freeze_encoder(self) -> None:
        """Stop training the model's encoder: its parameters get ``requires_grad=False`` and
        its normalisation layers stay in eval mode (running statistics fixed) across
        ``ds.train()``; the decoder, the heads and the wrapper's branches train on.

        Calls the model's own ``freeze_encoder()`` where it has one (smp, dsplug's nets), else
        freezes the encoder its adapter names (MONAI: the down path and the bottleneck). The
        balance then measures on the model's trainable weights.
        """
        self._set_encoder_frozen(True)

    def unfreeze_encoder(self) -> None:
        """Undo :meth:`freeze_encoder`: the encoder trains again, its normalisation layers in
        the wrapper's current mode."""
        self._set_encoder_frozen(False)

    def _set_encoder_frozen(self, frozen: bool) -> None:
        own = getattr(self.model, "freeze_encoder" if frozen else "unfreeze_encoder", None)
        if callable(own):
            own()
            self._encoder_frozen = False  # the model keeps the state
        else:
            set_frozen(self._adapter.encoder(), frozen, self.training)
            self._encoder_frozen = frozen
        self.train(self.training)  # smp's unfreeze puts the norms in training mode even in eval

    def strip(self) -> nn.Module:
        """Remove the hooks and return the original model object (for saving and export)."""
        self._detach_hooks()
        self._stripped = True
        return self.model

    def train(self, mode: bool = True) -> DeepSupervised:
        """Training mode keeps the decoder hooks registered (so ``torch.compile`` traces them);
        eval mode removes them, so ``ds(x)`` is the bare model with no hook at all."""
        super().train(mode)
        if self.__dict__.get("_encoder_frozen", False):  # absent on wrappers pickled before it
            set_norms_training(self._adapter.encoder(), False)
        if mode and not self._stripped:
            self._attach_hooks()
        else:
            self._detach_hooks()
        return self

    def _attach_hooks(self) -> None:
        if self._hooks is None and self.stages:
            taps = [(s.module_path, s.output_index) for s in self.stages]
            self._hooks = FeatureHooks(self.model, taps)

    def _detach_hooks(self) -> None:
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any:
        """``ds(x)``: exactly ``model(x)``; ``ds(x, y)``: a DSOutput with every branch.

        ``ds(x)`` in training mode trains no deep supervision: ``ds.loss`` refuses its output.
        """
        if y is None:
            return self.model(x)
        if self._stripped:
            raise RuntimeError("This DeepSupervised was stripped; wrap the model again.")
        if self.validate:
            self._check_batch(x, y)
        self._watch_updates()
        return self._supervised_forward(x, y)

    def _watch_updates(self) -> None:
        """One warning if optimiser steps move the model but none of the wrapper's own
        parameters (an optimiser built from ``model.parameters()`` before wrapping)."""
        watch = self._update_watch
        if watch.warned or not (self.training and torch.is_grad_enabled()):
            return
        if torch.compiler.is_compiling():
            return
        if not self.criterion.auxiliary_active:
            watch.reset()  # no auxiliary branch runs: the wrapper's parameters rest
            return
        own = [
            (n, p)
            for n, p in self.named_parameters()
            if p.requires_grad and not n.startswith("model.")
        ]
        watch.observe(self.model.parameters(), own)

    # --- standing in for the model -------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        """Attributes the wrapper does not own come from the wrapped model (as torch.compile's
        wrapper does): ``ds.encoder``, ``ds.freeze_encoder()``, ``ds.save_pretrained(...)``."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            model = self.__dict__.get("_modules", {}).get("model")
            if model is None or name.startswith("__"):
                raise
            try:
                return getattr(model, name)
            except AttributeError:
                raise AttributeError(
                    f"'{type(self).__name__}' object and its wrapped "
                    f"{type(model).__name__} have no attribute '{name}'"
                ) from None

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script(ds)`` in eval mode scripts the bare model (what ``ds(x)`` runs)."""
        if self.training:
            raise RuntimeError(
                "torch.jit.script(DeepSupervised) scripts inference only: call ds.eval() "
                "first, or script ds.strip() (the bare model)."
            )
        return self.model

    # --- the batch checks --------------------------------------------------------------------
    def _check_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        a = self._adapter
        self._check_image(x)
        check_target(
            y,
            (x.shape[0], a.classes, *x.shape[2:]),
            self.label_mode,
            check_values=not torch.compiler.is_compiling(),
            ignore_index=self.ignore_index,
        )

    def _check_image(self, x: torch.Tensor) -> None:
        a = self._adapter
        if x.dim() != a.spatial_dims + 2 or x.shape[1] != a.in_channels:
            raise ShapeError(
                f"Image batch has shape {tuple(x.shape)}; {type(self.model).__name__} expects "
                f"(B, {a.in_channels}, {', '.join('S' * a.spatial_dims)}).",
                tuple(x.shape),
                f"(B, {a.in_channels}, *spatial[{a.spatial_dims}])",
            )
        if x.shape[0] == 0:
            raise ValueError(
                f"Image batch has shape {tuple(x.shape)}: an empty batch (B = 0) has no loss; "
                "skip it before calling ds(x, y)."
            )
        weight = next((p for p in self.model.parameters() if p.is_floating_point()), None)
        mismatch = weight is not None and x.is_floating_point() and x.dtype != weight.dtype
        if mismatch and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(
                f"Image batch is {x.dtype} but the model's weights are {weight.dtype}: "
                f"convert the batch (x.to({weight.dtype})) or the model, or train under "
                "torch.autocast."
            )
        check_divisible(tuple(x.shape[2:]), a.divisor, "image batch")
        if self._aux_pool > 1:  # the auxiliary branches run on the image pooled
            check_divisible(
                tuple(x.shape[2:]), a.divisor * self._aux_pool, "image batch at aux_scale"
            )
        # Value checks read the data (a device sync, a graph break): eager mode only.
        if not torch.compiler.is_compiling():
            check_finite(x, "image batch")

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, levels={self.reductions}"
