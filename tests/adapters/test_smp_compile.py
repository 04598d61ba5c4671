"""smp models under torch.compile and torch.export."""

import pytest
import torch

from dsplug import DeepSupervised
from tests.adapters.test_smp import ARCHS, SLOW_COMBOS, TINY_ENCODERS, _combo_id

smp = pytest.importorskip("segmentation_models_pytorch")

# Every architecture and every tiny encoder of the test matrix (tests/adapters/test_smp.py) at
# least once; then two real-size encoders (slow): smp's ResNet, and the Mix Transformer, whose
# attention and drop path no tiny encoder has. Compiling the other real-size encoders of the
# matrix (EfficientNet, VGG) adds minutes on 2 cores and no code path the tiny ones miss.
COMPILE_COMBOS = [
    *(
        pytest.param(a, e, id=_combo_id(a, e))
        for a, e in [
            ("Unet", TINY_ENCODERS[0]),
            ("UnetPlusPlus", TINY_ENCODERS[1]),
            ("MAnet", TINY_ENCODERS[2]),
            ("Linknet", TINY_ENCODERS[1]),
            ("FPN", TINY_ENCODERS[0]),
        ]
    ),
    *(c for c in SLOW_COMBOS if c.values in (("Unet", "resnet34"), ("MAnet", "mit_b0"))),
]
assert len(COMPILE_COMBOS) == 7


def _build(arch, encoder):
    torch.manual_seed(0)
    return smp.create_model(
        arch, encoder_name=encoder, encoder_weights=None, in_channels=1, classes=2
    )


def _batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 1, 64, 64, generator=gen), torch.randint(0, 2, (2, 64, 64), generator=gen)


@pytest.mark.compile
@pytest.mark.slow
@pytest.mark.parametrize(("arch", "encoder"), COMPILE_COMBOS)
def test_hyb_training_forward_compiles_fullgraph(arch, encoder):
    # aux_every=1: every call runs the branches, so the eager and the compiled call compare
    ds = DeepSupervised(_build(arch, encoder), "hyb", label_mode="multiclass", aux_every=1)
    ds = ds.train()
    x, y = _batch()

    def loss_of(x, y):
        return ds.loss(ds(x, y), y).total

    def seeded(fn):
        torch.manual_seed(1)  # drop-connect and drop path draw the same masks in both runs
        return fn(x, y)

    torch._dynamo.reset()  # each case compiles `loss_of` anew: no recompile limit across cases
    compiled = torch.compile(loss_of, fullgraph=True, backend="eager")
    seeded(loss_of)  # the loss balance measures its scales in eager steps: take the first eagerly
    torch.testing.assert_close(seeded(compiled), seeded(loss_of), rtol=1e-4, atol=1e-4)


@pytest.mark.compile
@pytest.mark.slow
def test_hyb_training_step_compiles_with_inductor():
    """The default backend generates and builds C++ kernels for the forward and the backward.

    Inductor fuses and reorders float32 reductions; batch norms over 2x2 maps at batch 2 amplify
    that rounding in the backward (measured: loss equal to 1e-7, per-parameter gradient error up
    to 4% of the gradient's norm), so gradients are compared by relative norm, not elementwise.
    """

    def build():  # three levels: every kind of op of the matrix, a third fewer kernels to build
        torch.manual_seed(0)
        model = smp.Unet(
            TINY_ENCODERS[0],
            encoder_weights=None,
            encoder_depth=3,
            decoder_channels=(16, 8, 8),
            in_channels=1,
            classes=2,
        )
        # aux_every=1: the compiled call is a step that runs the branches, as eager's
        return DeepSupervised(model, "hyb", label_mode="multiclass", aux_every=1).train()

    ds, reference = build(), build()  # the same seeded build twice: equal weights, own gradients
    x, y = _batch()

    def loss_of(model, x, y):
        return model.loss(model(x, y), y).total

    torch._dynamo.reset()
    compiled = torch.compile(loss_of, fullgraph=True)
    for model in (ds, reference):  # the loss balance measures its scales in eager steps
        loss_of(model, x, y)
    loss = compiled(ds, x, y)
    expected = loss_of(reference, x, y)
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-4)
    loss.backward()
    expected.backward()
    checked = 0
    for (name, p), q in zip(ds.named_parameters(), reference.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if q.grad is None:
            continue
        if q.grad.norm() == 0:  # timm zero-initialises the last norm of each residual block
            assert p.grad.abs().max() < 1e-6, f"{name}: a gradient where eager has none"
            continue
        checked += 1
        error = (p.grad - q.grad).norm() / q.grad.norm()
        assert error < 0.1, f"{name}: gradient differs from eager by {error:.1%} of its norm"
    assert checked > len(list(reference.parameters())) / 2


@pytest.mark.compile
@pytest.mark.parametrize("arch", ARCHS)
def test_stripped_model_exports(arch):
    model = _build(arch, TINY_ENCODERS[0])
    bare = DeepSupervised(model, "hyb", label_mode="multiclass").strip().eval()
    x, _ = _batch()
    exported = torch.export.export(bare, (x,))
    torch.testing.assert_close(exported.module()(x), bare(x))
