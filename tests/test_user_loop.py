"""The user's own training loop, as a user writes it: batch sizes 1..3, their own loss, the
optimiser on ds.parameters(), accumulation and clipping, float64 and channels-last models,
weights in and out, pickling and EMA copies, the wrapper standing in for the model."""

import copy
import io
import pickle
import warnings

import pytest
import torch

from dsplug import MODES, DeepSupervised, DSOutput
from tests.helpers import make_batch, make_net

smp = pytest.importorskip("segmentation_models_pytorch")

# The hand-written loop of docs/getting-started.md, verbatim (it runs as written here).
README_LOOP = """
import segmentation_models_pytorch as smp
import torch
from torch.utils.data import DataLoader, TensorDataset

from dsplug import DeepSupervised

images, masks = torch.randn(5, 1, 64, 64), torch.randint(0, 3, (5, 64, 64))
loader = DataLoader(TensorDataset(images, masks), batch_size=2)  # last batch: 1 sample

model = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=3)
ds = DeepSupervised(model, mode="hyb", seg_loss=smp.losses.DiceLoss("multiclass"))
optimizer = torch.optim.AdamW(ds.parameters(), lr=1e-3)  # ds.parameters(), not model's

epochs = 2
for epoch in range(epochs):
    ds.train()
    ds.set_epoch(epoch, epochs)  # the deep-supervision schedule (1 -> 0 by the last epoch)
    for x, y in loader:
        optimizer.zero_grad()
        loss = ds.loss(ds(x, y), y)  # ds(x, y): every branch; ds(x): the bare model
        loss.total.backward()
        optimizer.step()
    print(epoch, {name: round(value, 4) for name, value in loss.terms.items()})

model = ds.strip()  # the bare smp model, hooks removed: save, export or serve it
torch.save(model.state_dict(), "unet.pt")
"""


# --- models -----------------------------------------------------------------------------------
def _own(classes=1):
    return make_net("unet", classes=classes)


def _smp(arch="Unet", classes=1, encoder="tu-test_resnet"):
    return smp.create_model(
        arch, encoder_name=encoder, encoder_weights=None, in_channels=1, classes=classes
    )


def _monai_basic(classes=1):
    nets = pytest.importorskip("monai.networks.nets")
    return nets.BasicUNet(2, 1, classes, features=(4, 4, 8, 8, 16, 4))


def _monai_dyn(classes=1):
    nets = pytest.importorskip("monai.networks.nets")
    return nets.DynUNet(2, 1, classes, [3] * 4, [1, 2, 2, 2], [2, 2, 2], filters=[4, 8, 8, 16])


# name -> (builder, input size): sizes where no BatchNorm sees a 1x1 map at batch 1 (torch
# refuses BatchNorm in training on one value per channel).
FAMILIES = {
    "own-unet": (_own, 32),
    "smp-unet": (_smp, 64),
    "monai-basicunet": (_monai_basic, 32),
    "monai-dynunet": (_monai_dyn, 32),
}


def _supports(model, mode):
    from dsplug.adapters import UnsupportedModelError, adapter_for

    try:
        adapter_for(model).check_supported(mode)
    except UnsupportedModelError:
        return False
    return True


def _step_all_sizes(ds, size, label_mode, classes, batches=(1, 2, 3)):
    for b in batches:
        x, y = make_batch(label_mode, classes, batch=b, size=size, seed=b)
        out = ds(x, y)
        assert out.logits.shape == (b, classes, size, size)
        if out.rec_image is not None:
            assert out.rec_image.shape == x.shape
        loss = ds.loss(out, y)
        assert torch.isfinite(loss.total), (b, loss.terms)
        loss.total.backward()


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_batch_size_in_every_mode(family, mode):
    build, size = FAMILIES[family]
    torch.manual_seed(0)
    model = build(classes=3)
    if not _supports(model, mode):
        pytest.skip(f"{family} does not support mode {mode}")
    ds = DeepSupervised(model, mode)
    _step_all_sizes(ds, size, "multiclass", 3)


@pytest.mark.parametrize("arch", ["UnetPlusPlus", "FPN", "Linknet", "MAnet"])
def test_every_batch_size_on_the_other_smp_architectures(arch):
    torch.manual_seed(0)
    ds = DeepSupervised(_smp(arch), "hyb")
    _step_all_sizes(ds, 64, "binary", 1)


def test_batch_one_at_other_sizes_than_the_trace():
    torch.manual_seed(0)
    ds = DeepSupervised(_smp(encoder="resnet18"), "hyb", aux_every=1)  # the decoder every call
    for shape in [(1, 1, 96, 64), (1, 1, 64, 128), (3, 1, 128, 96)]:
        x = torch.randn(shape)
        y = (torch.rand(shape) > 0.5).float()
        out = ds(x, y)
        assert out.rec_image.shape == shape
        ds.loss(out, y).total.backward()


# --- the README loop and the user's own loss ---------------------------------------------------
def test_readme_loop_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(README_LOOP, namespace)
    bare = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=3)
    bare.load_state_dict(torch.load(tmp_path / "unet.pt"), strict=True)


def test_monai_dice_ce_as_seg_loss():
    losses = pytest.importorskip("monai.losses")
    seg_loss = losses.DiceCELoss(softmax=True, to_onehot_y=True)

    def monai_loss(logits, target):  # MONAI wants (B, 1, *) indices
        return seg_loss(logits, target.unsqueeze(1))

    torch.manual_seed(0)
    ds = DeepSupervised(_own(classes=3), "hyb", seg_loss=monai_loss)
    opt = torch.optim.SGD(ds.parameters(), lr=0.05)
    x, y = make_batch("multiclass", 3, batch=1)
    loss = ds.loss(ds(x, y), y)
    loss.total.backward()
    opt.step()
    assert torch.isfinite(loss.total)


# --- the optimiser -----------------------------------------------------------------------------
def _steps(ds, opt, n=3, accumulate=1, clip=None):
    for i in range(n):
        for j in range(accumulate):
            x, y = make_batch(ds.label_mode, 1, seed=10 * i + j)
            (ds.loss(ds(x, y), y).total / accumulate).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(ds.parameters(), clip)
        opt.step()
        opt.zero_grad()


def test_an_optimiser_on_the_bare_model_warns_once_naming_the_wrapper_parameters():
    model = _own()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # built before wrapping: the mistake
    ds = DeepSupervised(model, "hyb")
    with pytest.warns(UserWarning, match=r"none of the wrapper's own \(.*align\..*ds\.parameters"):
        _steps(ds, opt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _steps(ds, opt)  # once only


def test_an_optimiser_on_the_wrapper_with_accumulation_and_clipping_does_not_warn():
    torch.manual_seed(0)
    ds = DeepSupervised(_own(), "hyb")
    opt = torch.optim.SGD(ds.parameters(), lr=0.1)
    own = {n: p.detach().clone() for n, p in ds.named_parameters() if not n.startswith("model.")}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _steps(ds, opt, n=3, accumulate=2, clip=1.0)
    params = dict(ds.named_parameters())
    assert any(not torch.equal(params[n], v) for n, v in own.items())
    assert all(p.grad is None for p in ds.parameters())


# --- dtype, layout, device ---------------------------------------------------------------------
@pytest.mark.parametrize("family", ["own-unet", "smp-unet", "monai-basicunet"])
def test_a_float64_model_wraps_and_trains(family):
    build, size = FAMILIES[family]
    torch.manual_seed(0)
    ds = DeepSupervised(build(classes=1).double(), "hyb")
    assert all(p.dtype == torch.float64 for p in ds.parameters())
    opt = torch.optim.SGD(ds.parameters(), lr=0.01)
    x, y = make_batch("binary", 1, batch=1, size=size)
    loss = ds.loss(ds(x.double(), y.double()), y.double())
    assert loss.total.dtype == torch.float64
    loss.total.backward()
    opt.step()


def test_a_channels_last_model_wraps_and_trains():
    torch.manual_seed(0)
    model = _smp().to(memory_format=torch.channels_last)
    ds = DeepSupervised(model, "hyb")
    opt = torch.optim.SGD(ds.parameters(), lr=0.01)
    x, y = make_batch("binary", 1, batch=2, size=64)
    x = x.contiguous(memory_format=torch.channels_last)
    loss = ds.loss(ds(x, y), y)
    loss.total.backward()
    opt.step()
    assert torch.isfinite(loss.total)


# --- weights in and out, pickling, EMA ---------------------------------------------------------
@pytest.mark.parametrize("family", ["own-unet", "smp-unet"])
def test_weights_out_load_strictly_into_a_fresh_bare_model_and_back(family):
    build, size = FAMILIES[family]
    torch.manual_seed(0)
    ds = DeepSupervised(build(classes=2), "hyb")
    _step_all_sizes(ds, size, "multiclass", 2, batches=(2,))
    state = ds.model.state_dict()
    fresh = build(classes=2)
    fresh.load_state_dict(state, strict=True)  # ds.model.state_dict(): no prefix, no extras
    stripped = copy.deepcopy(ds).strip()
    fresh.load_state_dict(stripped.state_dict(), strict=True)

    again = DeepSupervised(build(classes=2), "hyb")  # bare weights into a new wrapper
    again.model.load_state_dict(state, strict=True)
    x, _ = make_batch("multiclass", 2, size=size)
    ds.eval(), again.eval()
    torch.testing.assert_close(again(x), ds(x))
    assert not any(k.startswith("model.") for k in fresh.state_dict())


@pytest.mark.parametrize("family", ["own-unet", "smp-unet"])
@pytest.mark.parametrize("how", ["torch.save", "pickle", "deepcopy"])
def test_the_wrapper_pickles_and_the_copy_trains_on_its_own_weights(family, how):
    build, size = FAMILIES[family]
    torch.manual_seed(0)
    ds = DeepSupervised(build(classes=1), "hyb")
    x, y = make_batch("binary", 1, size=size)
    ds.loss(ds(x, y), y).total.backward()
    if how == "torch.save":
        buffer = io.BytesIO()
        torch.save(ds, buffer)
        buffer.seek(0)
        twin = torch.load(buffer, weights_only=False)
    elif how == "pickle":
        twin = pickle.loads(pickle.dumps(ds))
    else:
        twin = copy.deepcopy(ds)
    for (name, a), (_, b) in zip(ds.state_dict().items(), twin.state_dict().items()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), name
    ds.eval(), twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(twin.loss(twin(x, y), y).total, ds.loss(ds(x, y), y).total)
    twin.train()
    twin_encoder = set(map(id, twin._adapter.encoder().parameters()))
    tied = getattr(twin.reconstruction, "tied_parameters", dict)().values()
    assert all(id(p) in twin_encoder for p in tied), "the copy's decoder reads the original"
    twin.loss(twin(x, y), y).total.backward()
    assert twin.strip() is twin.model
    assert not any(m._forward_hooks for m in twin.model.modules())
    assert ds.train() and any(m._forward_hooks for m in ds.model.modules())


def test_an_ema_copy_follows_the_trained_wrapper():
    torch.manual_seed(0)
    ds = DeepSupervised(_smp(), "hyb")
    ema = copy.deepcopy(ds).eval()
    opt = torch.optim.SGD(ds.parameters(), lr=0.1)
    for i in range(2):
        x, y = make_batch("binary", 1, size=64, seed=i)
        ds.loss(ds(x, y), y).total.backward()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), ds.parameters()):
                e.lerp_(p, 0.5)
    x, _ = make_batch("binary", 1, size=64)
    assert ema(x).shape == (2, 1, 64, 64)
    first_ema, first = next(ema.model.parameters()), next(ds.model.parameters())
    assert not torch.equal(first_ema, first) and first_ema.data_ptr() != first.data_ptr()


# --- targets -----------------------------------------------------------------------------------
def test_a_one_hot_target_gives_the_loss_of_its_class_indices():
    torch.manual_seed(0)
    ds = DeepSupervised(_own(classes=3), "hyb").eval()
    x, y = make_batch("multiclass", 3)
    one_hot = torch.nn.functional.one_hot(y, 3).movedim(-1, 1).float()
    with torch.no_grad():
        by_index = ds.loss(ds(x, y), y).total
        by_one_hot = ds.loss(ds(x, one_hot), one_hot).total
    torch.testing.assert_close(by_one_hot, by_index)
    with pytest.raises(ValueError, match=r"read as one-hot.*exactly one 1.*class indices"):
        ds(x, one_hot * 2)


def test_ignore_index_is_accepted_by_the_checks():
    x, y = make_batch("multiclass", 3)
    y[:, :4] = 255
    with pytest.raises(ValueError, match=r"\[0, 255\].*ignore_index"):
        DeepSupervised(_own(classes=3), "hyb")(x, y)
    ds = DeepSupervised(_own(classes=3), "hyb", ignore_index=255)
    out = ds(x, y)
    loss = ds.loss(out, y)
    assert torch.isfinite(loss.total)


# --- the wrapper stands in for the model -------------------------------------------------------
def test_the_wrapper_stands_in_for_an_smp_model(tmp_path):
    model = _smp(classes=7)
    ds = DeepSupervised(model, "hyb")
    assert ds.label_mode == "multiclass"  # from the 7 output channels
    assert ds.encoder is model.encoder and ds.decoder is model.decoder
    assert ds.requires_divisible_input_shape is model.requires_divisible_input_shape
    ds.freeze_encoder()
    assert not any(p.requires_grad for p in model.encoder.parameters())
    ds.save_pretrained(tmp_path)
    restored = smp.from_pretrained(tmp_path)
    assert type(restored) is type(model)
    assert restored.state_dict().keys() == model.state_dict().keys()
    with pytest.raises(AttributeError, match=r"and its wrapped Unet have no attribute 'nope'"):
        _ = ds.nope

    x, y = make_batch("multiclass", 7, size=64)
    out = ds.train()(x)  # training mode, no target: what model(x) returns
    assert type(out) is torch.Tensor
    torch.manual_seed(0)
    assert torch.equal(ds(x), model(x))
    with pytest.raises(TypeError, match=r"needs the DSOutput of ds\(x, y\)"):
        ds.loss(out, y)
    assert isinstance(ds(x, y), DSOutput)


def test_label_mode_defaults_from_the_output_channels():
    assert DeepSupervised(_own(classes=1), "hyb").label_mode == "binary"
    assert DeepSupervised(_own(classes=4), "hyb").label_mode == "multiclass"
    assert DeepSupervised(_own(classes=4), "hyb", label_mode="multilabel").label_mode == (
        "multilabel"
    )


def test_torch_jit_script_of_the_eval_wrapper():
    model = _smp(encoder="resnet18")
    ds = DeepSupervised(model, "hyb")
    with pytest.raises(RuntimeError, match=r"call ds\.eval\(\).*ds\.strip\(\)"):
        torch.jit.script(ds)
    scripted = torch.jit.script(ds.eval())
    x = torch.randn(1, 1, 64, 64)
    torch.testing.assert_close(scripted(x), ds(x))
