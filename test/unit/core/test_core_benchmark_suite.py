"""The ``core`` benchmark suite runs and reports well-formed rows (no timing assertions)."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("cv2")


def test_quick_run_rows() -> None:
    from cvgl_ros.tools.benchmarks import core

    rows = core.run(quick=True)
    names = {r["name"] for r in rows}
    for n in (512, 1024, 4096):
        for kind in ("informative", "uninformative"):
            assert f"ransac_n{n}_out50_{kind}_weights" in names
            assert f"opencv_n{n}_out50_{kind}_weights" in names
            assert f"ransac_numpy_n{n}_out50_{kind}_weights" in names
    for r in rows:
        assert isinstance(r["metric"], str) and math.isfinite(float(r["value"]))
        if "baseline" in r:
            assert r["baseline"] in names
            assert math.isfinite(float(r["ratio"]))
    # Accuracy rows: both solvers find the pose to a few centimetres on these problems.
    errors = [r["value"] for r in rows if r["metric"] == "mean_position_error_m"]
    assert errors and max(errors) < 0.2
    # Our rows say which implementation ran, and quick runs skip the kernel compile rows.
    ours = next(r for r in rows if r["name"] == "ransac_n1024_out50_informative_weights")
    assert ours["notes"].split()[0] in ("numba", "numpy")
    assert "paired difference" in ours["notes"]
    assert not any(r["name"] == "ransac_kernel_load" for r in rows)
    nees_row = next(r for r in rows if r["name"] == "covariance_nees_chi2_3dof")
    assert 0.85 < nees_row["value"] <= 1.0
