"""PyTorch Lightning: a LightningModule that trains a segmentation model with deep supervision.

Needs the optional extra ``lightning`` (``pip install 'dsplug[lightning]'``); ``import dsplug``
does not import Lightning, only ``import dsplug.lightning`` does.

Example:
    >>> import pytorch_lightning as pl
    >>> from dsplug.lightning import DeepSupervisedModule
    >>> module = DeepSupervisedModule(model, mode="hyb", lr=1e-3)
    >>> pl.Trainer(max_epochs=2).fit(module, train_loader, val_loader)
    >>> model = module.ds.strip()  # the bare model, trained

Images without masks: ``DeepSupervisedModule(model, semi="pseudo")`` and batches that carry
them under ``"unlabeled"`` (a mapping batch with that key, e.g. from a
``CombinedLoader({"labeled": labelled_loader, "unlabeled": unlabelled_loader})``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

try:
    import pytorch_lightning as pl
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "dsplug.lightning needs PyTorch Lightning: pip install 'dsplug[lightning]'."
    ) from error

from .cost import AuxEvery, aux_every_of, check_aux_every
from .losses import LossBreakdown, LossWeights
from .semi import EMATeacher, check_recipe, default_weight, recipe_loss, sigmoid_rampup
from .wrapper import DeepSupervised, SegLoss

__all__ = ["DeepSupervisedModule"]


OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class DeepSupervisedModule(pl.LightningModule):
    """Trains ``model`` wrapped in :class:`DeepSupervised`; validates, predicts and saves it.

    A batch is ``(image, target)`` (a tuple or list) or a mapping with ``image_key`` and
    ``label_key``; ``predict_step`` also takes a bare image tensor. Logged: ``train/loss``,
    ``val/loss`` and every term as ``train/<term>`` / ``val/<term>`` (weighted values that add
    up to the loss). The deep-supervision schedule advances with the epoch
    (``current_epoch / max_epochs``).

    Images without masks (``semi``): a training batch that is a mapping with the key
    ``"unlabeled"`` carries them there (a tensor, an ``(image, ...)`` tuple or a mapping with
    ``image_key``); its labelled part is ``batch["labeled"]`` when present (the form of
    ``CombinedLoader({"labeled": ..., "unlabeled": ...})``), else the batch itself. Their
    loss (``semi`` as ``dsplug train --semi``: ``"pseudo"``, ``"mean-teacher"``,
    ``"rei"`` or ``"consistency"``) is added with ``unlabeled_weight`` x a sigmoid ramp-up
    over ``rampup_steps`` optimiser steps and logged as ``train/unlabeled``. The EMA teacher
    (``module.teacher``) is updated in ``on_train_batch_end`` and saved in Lightning's
    checkpoints.

    Args:
        model: the segmentation model (smp, MONAI, dsplug's own; see ``DeepSupervised``).
        mode: the deep-supervision mode.
        lr: AdamW's learning rate when no ``optimizer`` is given.
        optimizer: ``optimizer(params) -> torch.optim.Optimizer``, given the wrapper's
            parameters (the model's and the wrapper's own).
        weights: as DeepSupervised.
        label_mode: as DeepSupervised.
        schedule: as DeepSupervised.
        balance: as DeepSupervised.
        seg_loss: as DeepSupervised.
        ignore_index: as DeepSupervised.
        aux_every: as DeepSupervised (None: the mode's default, 2 for ``hyb``). Saved as the
            value the wrapper runs with; a checkpoint from before the option, without it, ran
            the branches on every step, so it resumes and reloads with 1 unless given.
        image_key: the image's key in a mapping batch.
        label_key: the mask's key in a mapping batch.
        semi: the recipe for images without masks, or None (a batch with them is an error).
        unlabeled_weight: their loss's weight after the ramp-up; None: 1.0 (0.1 for
            ``"mean-teacher"``).
        rampup_steps: the optimiser steps of the sigmoid ramp-up (0: none).
        ema_decay: the EMA teacher's decay.

    Checkpoints hold the wrapper's state; reload with
    ``DeepSupervisedModule.load_from_checkpoint(path, model=fresh_model)`` (plus ``seg_loss``
    and ``optimizer`` when used: callables are not saved as hyperparameters).
    """

    def __init__(
        self,
        model: nn.Module,
        mode: str = "hyb",
        *,
        lr: float = 1e-3,
        optimizer: OptimizerFactory | None = None,
        weights: str | Mapping[str, object] | LossWeights = "equal",
        label_mode: str | None = None,
        schedule: str | None = None,
        balance: str = "auto",
        seg_loss: SegLoss | None = None,
        ignore_index: int | None = None,
        aux_every: int | None = None,
        image_key: str = "image",
        label_key: str = "label",
        semi: str | None = None,
        unlabeled_weight: float | None = None,
        rampup_steps: int = 0,
        ema_decay: float = 0.99,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "seg_loss"])
        self.ds = DeepSupervised(
            model,
            mode,
            weights=weights,
            label_mode=label_mode,
            schedule=schedule,
            balance=balance,
            seg_loss=seg_loss,
            ignore_index=ignore_index,
            aux_every=aux_every,
        )
        self._aux_every_given = aux_every is not None
        self.hparams["aux_every"] = self.ds.aux_every  # a reload rebuilds this very step
        self._optimizer = optimizer
        check_recipe(semi, mode)
        self.teacher = (
            EMATeacher(self.ds, ema_decay) if semi in ("pseudo", "mean-teacher") else None
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the ``aux_every`` a checkpoint was trained with, unless one was given: one
        without it (saved before the option) ran the branches on every step."""
        if self._aux_every_given:
            return
        every = aux_every_of(checkpoint.get(self.CHECKPOINT_HYPER_PARAMS_KEY, {}))
        if every != self.ds.aux_every:
            self.ds._aux_every = AuxEvery(check_aux_every(every, self.ds.spec))
            self.hparams["aux_every"] = every

    @property
    def model(self) -> nn.Module:
        """The wrapped segmentation model."""
        return self.ds.model

    def forward(self, x: torch.Tensor) -> Any:
        """``model(x)``."""
        return self.ds(x)

    def _unpack(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(batch, torch.Tensor):
            return batch, None
        if isinstance(batch, Mapping):
            return batch[self.hparams.image_key], batch.get(self.hparams.label_key)
        if isinstance(batch, list | tuple) and len(batch) in (1, 2):
            return batch[0], batch[1] if len(batch) == 2 else None
        raise TypeError(
            f"A batch is (image, target), a mapping with keys {self.hparams.image_key!r} and "
            f"{self.hparams.label_key!r}, or an image tensor; got {type(batch).__name__}."
        )

    def _step(self, batch: Any, stage: str) -> LossBreakdown:
        x, y = self._unpack(batch)
        if y is None:
            raise ValueError(f"The {stage} batch has no target; deep supervision needs one.")
        loss = self.ds.loss(self.ds(x, y), y)
        size = int(x.shape[0])
        self.log(f"{stage}/loss", loss.total.detach(), prog_bar=True, batch_size=size)
        self.log_dict({f"{stage}/{k}": v for k, v in loss.tensors.items()}, batch_size=size)
        return loss

    def on_train_epoch_start(self) -> None:
        epochs = self.trainer.max_epochs
        if epochs is not None and 0 <= self.current_epoch < epochs:
            self.ds.set_epoch(self.current_epoch, epochs)  # the Trainer's convention
        else:
            self.ds.set_progress(0.0)  # no epoch budget (max_epochs=-1): the schedule waits

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if not (isinstance(batch, Mapping) and "unlabeled" in batch):
            return self._step(batch, "train").total
        semi = self.hparams.semi
        if semi is None:
            raise ValueError(
                "The batch carries images without masks ('unlabeled'); pass semi='pseudo' (or "
                "'mean-teacher', 'rei', 'consistency') to DeepSupervisedModule to learn from them."
            )
        loss = self._step(batch.get("labeled", batch), "train").total
        u = batch["unlabeled"]
        if isinstance(u, Mapping):
            u = u[self.hparams.image_key]
        elif isinstance(u, list | tuple):
            u = u[0]
        extra = recipe_loss(self.ds, self.teacher, u, semi)
        weight = self.hparams.unlabeled_weight
        if weight is None:
            weight = default_weight(semi)
        weight *= sigmoid_rampup(self.global_step, self.hparams.rampup_steps)
        self.log("train/unlabeled", extra.detach(), batch_size=int(u.shape[0]))
        return loss + weight * extra

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.teacher is not None:  # after the optimiser step (no gradient accumulation)
            self.teacher.update()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        return self.ds(self._unpack(batch)[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self._optimizer is not None:
            return self._optimizer(self.ds.parameters())
        return torch.optim.AdamW(self.ds.parameters(), lr=self.hparams.lr)
