"""HD95 and NSD of a case share one pair of distance transforms per class, with the values of
scoring each metric on its own."""

from __future__ import annotations

import numpy as np
import pytest

from dsplug.metrics import surface as surface_module
from dsplug.metrics.surface import hd95, surface_dice, surface_scores


def _masks(rng: np.random.Generator, shape: tuple[int, ...], classes: int) -> np.ndarray:
    """Blobs with holes and specks, some classes empty."""
    masks = rng.random((classes, *shape)) > rng.uniform(0.3, 0.97, (classes,) + (1,) * len(shape))
    masks[rng.random(classes) < 0.2] = False
    return masks


@pytest.mark.parametrize("shape", [(31, 27), (9, 14, 11)])
@pytest.mark.parametrize("seed", range(4))
def test_surface_scores_equal_each_metric_alone(shape, seed) -> None:
    rng = np.random.default_rng(seed)
    pred, truth = _masks(rng, shape, 3), _masks(rng, shape, 3)
    spacing = tuple(rng.uniform(0.5, 2.0, len(shape)))
    got = surface_scores(pred, truth, spacing, tolerance=1.5)
    hd = [hd95(p, t, spacing) for p, t in zip(pred, truth)]
    nsd = [surface_dice(p, t, 1.5, spacing) for p, t in zip(pred, truth)]
    np.testing.assert_array_equal(got["hd95"], np.asarray(hd))  # nan where nan
    np.testing.assert_array_equal(got["nsd"], np.asarray(nsd))


def test_surface_scores_run_two_distance_transforms_per_class(monkeypatch) -> None:
    calls = []
    edt = surface_module._ndimage.distance_transform_edt

    def counted(*args, **kwargs):
        calls.append(1)
        return edt(*args, **kwargs)

    monkeypatch.setattr(surface_module._ndimage, "distance_transform_edt", counted)
    rng = np.random.default_rng(0)
    pred = rng.random((3, 20, 20)) > 0.5
    truth = rng.random((3, 20, 20)) > 0.5
    surface_scores(pred, truth)
    assert len(calls) == 2 * 3  # pred -> truth and back, per class; not again for NSD
