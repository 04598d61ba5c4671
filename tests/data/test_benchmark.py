"""The data-loading benchmark runs end to end on a small MSD folder and reports its schema."""

from __future__ import annotations

import json

import nibabel as nib

from benchmarks.cost.data_loading import main


def test_data_loading_benchmark_schema(make_msd, tmp_path, capsys) -> None:
    root = make_msd(n=10)
    out = tmp_path / "result.json"
    result = main(["--source", str(root), "--repeats", "1", "--workers", "0", "--json", str(out)])
    assert json.loads(out.read_text()) == result == json.loads(capsys.readouterr().out)
    total = sum(nib.load(p).shape[2] for p in (root / "labelsTr").glob("*.nii.gz"))
    for name in ("uncached", "cached"):
        run = result[name]
        assert run["slices"] == total and run["cases"] == 10
        assert run["total_s"] > 0 and run["slices_per_s"] > 0
    assert result["speedup_build"] > 1.0  # the cached build reads JSON, not NIfTI
    assert isinstance(result["meets_target"], bool)
