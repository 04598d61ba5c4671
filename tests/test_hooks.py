import pytest
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


class _PartlyUsed(nn.Module):
    """A model with a child its forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Conv2d(1, 2, 3, padding=1)
        self.unused = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def test_missing_tap_is_an_error():
    model = _PartlyUsed()
    hooks = FeatureHooks(model, [("used", None), ("unused", None)])
    x = torch.randn(1, 1, 8, 8)
    with hooks.capture():
        model(x)
    with pytest.raises(RuntimeError, match=r"\['unused'\] did not fire"):
        hooks.pop(x.device)
    assert hooks._outputs == {}  # the failed read cleared what the call recorded
    with pytest.raises(RuntimeError, match=r"\['used', 'unused'\] did not fire"):
        hooks.pop(x.device)  # nothing recorded at all: every tap is named


def test_remove_leaves_no_hook():
    model = _model()
    with FeatureHooks(model, [("0", None), ("2", None)]):
        assert model[0]._forward_hooks and model[2]._forward_hooks
        assert not model[1]._forward_hooks
    assert all(not m._forward_hooks for m in model.modules())
