import torch
from torch import nn

from dsplug.hooks import FeatureHooks


def _model():
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 1))


def test_records_only_while_capturing_and_clears_on_read():
    model = _model()
    hooks = FeatureHooks(model, [("0", None), ("", None)])
    x = torch.randn(1, 1, 8, 8)
    model(x)
    assert hooks._outputs == {}
    with hooks.capture():
        out = model(x)
    first, last = hooks.pop(x.device)
    assert first.shape == (1, 2, 8, 8)
    assert torch.equal(last, out)
    assert hooks._outputs == {}


def test_missing_tap_is_an_error():
    model = _model()
    hooks = FeatureHooks(model, [("0", None)])
    try:
        hooks.pop(torch.device("cpu"))
    except RuntimeError as err:
        assert "did not fire" in str(err)
    else:
        raise AssertionError("expected a RuntimeError")


def test_remove_leaves_no_hook():
    model = _model()
    with FeatureHooks(model, [("0", None), ("2", None)]):
        assert model[0]._forward_hooks
    assert all(not m._forward_hooks for m in model.modules())
