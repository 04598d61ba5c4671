"""Cheaper auxiliary branches (issue 28): ``aux_scale`` (the G pass and the tied decoder on
X and G pooled) and ``aux_every`` (the branches every k-th step, weighted k). The guards: no
cheaper path silently drops a term of hyb."""

from __future__ import annotations

import copy

import pytest
import torch

from dsplug import DeepSupervised
from dsplug._checks import ShapeError
from dsplug.cost import aux_every_of, default_aux_every, pool_target
from dsplug.losses import HybLoss
from dsplug.options import Mode, PseudoLabels
from tests.helpers import make_batch, make_net

DESIGNS = {
    "hyb": {"aux_every": 1},  # the paper's hyb
    "aux_scale": {"aux_scale": 0.5},
    "aux_every": {"aux_every": 2},
    "both": {"aux_scale": 0.5, "aux_every": 2},
    "scale+fraction": {"aux_scale": 0.5, "aux_fraction": 0.5},
}


def _batch(batch: int = 2, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(batch, 1, size, size)
    y[:, :, 2:10, 3:11] = 1
    y[1, :, 12:14, 1:15] = 1
    return x, y


def _ds(measure: bool = False, **options: object) -> DeepSupervised:
    torch.manual_seed(0)
    ds = DeepSupervised(make_net(base=8, depth=3), mode="hyb", **options).train()
    ds.criterion.pseudo_labels = PseudoLabels.SOFT  # pseudo-label terms nonzero at init
    if not measure:  # the balance's scales stay 1 (its measurement costs a backward per term)
        ds.criterion.balancer.steps.fill_(ds.criterion.balancer.every + 1)
    return ds


def _encoder_grad(ds: DeepSupervised) -> float:
    return sum(
        float(p.grad.abs().sum()) for p in ds._adapter.encoder().parameters() if p.grad is not None
    )


@pytest.mark.parametrize("design", list(DESIGNS))
def test_every_term_of_hyb_is_nonzero_and_reaches_the_encoder(design: str) -> None:
    """Guard: each of hyb's terms, alone in the loss (weight 1, the others 0), is nonzero and
    sends a gradient to the encoder, on a step that runs the auxiliary branches."""
    x, y = _batch()
    ds = _ds(**DESIGNS[design])
    for term in HybLoss.terms:
        ds.zero_grad(set_to_none=True)
        ds._aux_every.calls.clear()  # every call a step that runs the branches
        fields = {t.weight: 0.0 for t in HybLoss.terms}
        ds.set_weights({**fields, "alpha": 1e-12, term.weight: 1.0})
        loss = ds.loss(ds(x, y), y)
        loss.total.backward()
        assert loss.raw[term.name] > 0, f"{design}: {term.name} is {loss.raw[term.name]}"
        assert loss.terms[term.name] > 0, f"{design}: {term.name} weighted to 0"
        assert _encoder_grad(ds) > 1e-8, f"{design}: no gradient from {term.name}"


@pytest.mark.parametrize("design", ["aux_scale", "both"])
def test_the_balance_weighs_every_term_of_a_cheaper_hyb(design: str) -> None:
    """Guard: under the default recipe (the balance measuring), every term has a weighted
    share of the total on a step that runs the auxiliary branches."""
    ds = _ds(measure=True, **DESIGNS[design])
    x, y = _batch()
    loss = ds.loss(ds(x, y), y)
    assert all(v > 0 for v in loss.terms.values()), loss.terms


def test_aux_scale_runs_the_branches_on_pooled_inputs() -> None:
    ds = _ds(aux_scale=0.5)
    sizes = []
    ds.model.register_forward_pre_hook(lambda _, args: sizes.append(args[0].shape[-1]))
    x, y = _batch()
    out = ds(x, y)
    assert sizes == [16, 8]  # the X pass at full size, the G pass pooled
    assert out.logits.shape[-1] == 16 and out.mask_logits.shape[-1] == 8
    assert out.rec_image.shape[-1] == out.rec_mask.shape[-1] == 8
    torch.testing.assert_close(out.aux_image, torch.nn.functional.avg_pool2d(x, 2))
    assert torch.equal(out.aux_target, torch.nn.functional.max_pool2d(y, 2))
    assert {r: f.shape[-1] for r, f in out.mask_features.items()} == {
        r: f.shape[-1] // 2 for r, f in out.features.items()
    }


def test_pooled_targets_keep_thin_foreground_and_void_only_where_all_is_void() -> None:
    y = torch.zeros(1, 1, 4, 4)
    y[0, 0, 1, :] = 1  # a one-pixel line
    assert pool_target(y, "binary", 2, 2, 1).flatten().tolist() == [1, 1, 0, 0]
    labels = torch.tensor([[[0, 0, 2, 1], [0, 1, 2, 0], [255, 255, 0, 0], [255, 0, 0, 0]]])
    pooled = pool_target(labels, "multiclass", 2, 2, 3, ignore_index=255)
    # foreground wins over background; 255 only where the whole window is void
    assert pooled.tolist() == [[[1, 2], [0, 0]]]
    void = torch.full((1, 2, 2), 255)
    assert pool_target(void, "multiclass", 2, 2, 3, ignore_index=255).tolist() == [[[255]]]
    binary = torch.tensor([[[[255.0, 255.0], [255.0, 1.0]]]])
    assert pool_target(binary, "binary", 2, 2, 1, ignore_index=255).flatten().tolist() == [1.0]


@pytest.mark.parametrize("label_mode,classes", [("multiclass", 3), ("multilabel", 2)])
def test_aux_scale_with_other_label_modes_and_void(label_mode: str, classes: int) -> None:
    torch.manual_seed(0)
    net = make_net(base=8, depth=3, classes=classes)
    ds = DeepSupervised(net, "hyb", label_mode=label_mode, ignore_index=255, aux_scale=0.5)
    x, y = make_batch(label_mode, classes, batch=2, size=16)
    y[0, ..., :4, :] = 255
    loss = ds.loss(ds(x, y), y)
    loss.total.backward()
    assert all(v == v for v in loss.raw.values()) and loss.raw["mask"] > 0


def test_a_skipped_step_is_exactly_none_and_a_run_step_weighs_k() -> None:
    x, y = _batch()
    ds, every1 = _ds(True, aux_every=2), _ds(True, aux_every=1)
    none = DeepSupervised(copy.deepcopy(ds.model), "none").train()
    runs = [ds.loss(ds(x, y), y) for _ in range(3)]
    reference = every1.loss(every1(x, y), y)
    for name, value in reference.terms.items():
        expected = value if name == "image" else 2 * value
        assert runs[0].terms[name] == pytest.approx(expected, rel=1e-5), name
    skipped = ds(x, y)
    assert skipped.mask_logits is None and skipped.rec_image is None and skipped.aux_weight == 0
    loss = ds.loss(skipped, y)
    torch.testing.assert_close(loss.total, none.loss(none(x, y), y).total)
    assert [r.terms["mask"] > 0 for r in runs] == [True, False, True]


def test_aux_every_counts_unlabelled_calls_apart_and_not_in_eval() -> None:
    ds = _ds(aux_every=3)
    x, y = _batch()
    ran = []
    for _ in range(3):
        ran.append((ds(x, y).aux_weight, ds.unlabeled(x).aux_weight))
    assert ran == [(3.0, 3.0), (0.0, 0.0), (0.0, 0.0)]
    ds.eval()
    assert [ds(x, y).aux_weight for _ in range(2)] == [1.0, 1.0]
    with torch.no_grad():
        ds.train()
        assert ds(x, y).aux_weight == 1.0


def test_unlabelled_batches_at_aux_scale() -> None:
    from dsplug.semi import EMATeacher

    ds = _ds(aux_scale=0.5)
    x, _ = _batch()
    out = ds.unlabeled(x)
    assert out.rec_image.shape[-1] == 8
    loss = ds.loss(out)
    loss.total.backward()
    assert loss.raw["rei"] > 0 and _encoder_grad(ds) > 0
    out = ds.unlabeled(x, EMATeacher(ds))
    assert ds.loss(out).total.isfinite()


def test_the_options_are_checked_saved_in_config_and_leave_the_state_dict_alone() -> None:
    for bad in ({"aux_scale": 0.3}, {"aux_scale": True}, {"aux_every": 0}, {"aux_every": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DeepSupervised(make_net(), "hyb", **bad)
    with pytest.raises(ValueError, match="none to make cheaper"):
        DeepSupervised(make_net(), "up", aux_scale=0.5)
    with pytest.raises(ValueError, match="none to make cheaper"):
        DeepSupervised(make_net(), "none", aux_every=2)
    ds = _ds(aux_scale=0.5, aux_every=2)
    assert ds.config()["aux_scale"] == 0.5 and ds.config()["aux_every"] == 2
    assert "aux_scale" not in _ds().config()
    _ds().load_state_dict(ds.state_dict())  # same keys: strict load both ways
    ds.load_state_dict(_ds().state_dict())
    x, y = _batch(size=20)  # divisible by 4 (depth 3) but not by 8 (4 at half size)
    with pytest.raises(ShapeError, match="aux_scale"):
        ds(x, y)


def test_hyb_runs_its_branches_every_other_step_by_default_and_the_other_modes_every_step() -> None:
    """The default (issue 28): ``aux_every=2`` for hyb, 1 for every other mode; an explicit
    ``aux_every=1`` is the paper's hyb, its branches on every call."""
    for mode in Mode:
        expected = 2 if mode == Mode.HYB else 1
        assert default_aux_every(mode) == expected, mode
        assert DeepSupervised(make_net(), mode).aux_every == expected, mode
    x, y = _batch()
    default, paper = _ds(), _ds(aux_every=1)
    assert [default(x, y).aux_weight for _ in range(4)] == [2.0, 0.0, 2.0, 0.0]
    for _ in range(3):
        out = paper(x, y)
        assert out.aux_weight == 1.0 and out.mask_logits is not None
        assert out.rec_image is not None and out.rec_mask is not None


def test_configs_record_aux_every_and_one_without_it_rebuilds_the_paper_step() -> None:
    """A new hyb wrapper's config holds ``aux_every`` 2 and rebuilds the same wrapper; a config
    without the key (a hyb run from before the default changed) rebuilds with 1, not 2."""
    config = _ds().config()
    assert config["aux_every"] == 2 and aux_every_of(config) == 2
    rebuilt = DeepSupervised(make_net(), config["mode"], aux_every=aux_every_of(config))
    assert rebuilt.config() == DeepSupervised(make_net(), "hyb").config()
    old = {k: v for k, v in config.items() if k != "aux_every"}
    assert aux_every_of(old) == 1
    rebuilt = DeepSupervised(make_net(), old["mode"], aux_every=aux_every_of(old))
    assert rebuilt.aux_every == 1 and "aux_every" not in rebuilt.config()
    assert _ds(aux_every=1).config() == old  # the paper's hyb: its config as before
    with pytest.raises(ValueError, match="aux_every"):
        aux_every_of({**config, "aux_every": 0})


@pytest.mark.compile
def test_aux_every_compiles_one_graph_per_phase() -> None:
    """torch.compile guards on the step's phase: a few graphs, then none new, not one per call
    (a running count recompiled at every call, then ran eagerly past dynamo's recompile
    limit)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    ds = _ds()  # hyb's default: aux_every=2
    ds.compile(backend="eager")
    x, y = _batch()
    try:
        assert [ds(x, y).aux_weight for _ in range(4)] == [2.0, 0.0] * 2
        graphs = counters["stats"]["unique_graphs"]
        assert graphs <= 3  # a step with branches, one without; the first call's empty count
        assert [ds(x, y).aux_weight for _ in range(10)] == [2.0, 0.0] * 5
        assert counters["stats"]["unique_graphs"] == graphs
    finally:
        torch._dynamo.reset()
