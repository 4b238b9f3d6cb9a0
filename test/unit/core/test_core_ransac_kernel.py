"""The compiled RANSAC kernel agrees with the numpy reference; selection of the implementation.

The numpy solver (``implementation="numpy"``) is the readable reference; the numba kernel runs
the same steps on the same seeded draws. Agreement is checked on the whole result (model,
inliers, residuals, iteration count, cost) over sizes, outlier ratios, weights, priors and
settings; errors must be the same type and message.
"""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvgl_ros.core import ransac
from cvgl_ros.core.config import RansacConfig
from cvgl_ros.core.errors import CoreError
from cvgl_ros.core.ransac import HypothesisPriors, RansacResult, ransac_similarity
from cvgl_ros.core.synthetic import make_problem

kernel = pytest.importorskip("cvgl_ros.core.ransac_kernel", reason="numba is not installed")


@pytest.fixture(autouse=True)
def _compiled() -> None:
    if ransac.load_compiled_kernel() is None:
        pytest.skip(f"numba kernel unavailable: {ransac.compiled_kernel_error()}")


_TH2 = RansacConfig().inlier_threshold_m ** 2


def _both(*args: Any, config: RansacConfig, **kwargs: Any) -> tuple[Any, Any]:
    out = []
    for impl in ("numpy", "numba"):
        try:
            out.append(
                ransac_similarity(*args, config=replace(config, implementation=impl), **kwargs)
            )
        except (CoreError, ValueError) as exc:
            out.append(exc)
    return out[0], out[1]


def _assert_same(a: RansacResult | Exception, b: RansacResult | Exception) -> None:
    if isinstance(a, Exception) or isinstance(b, Exception):
        assert type(a) is type(b), (a, b)
        assert str(a) == str(b)
        return
    assert b.cost == pytest.approx(a.cost, rel=1e-9, abs=1e-9)
    if not np.array_equal(a.inlier_mask, b.inlier_mask):
        # An exact tie (e.g. 5 points, two disjoint pairs each fitted exactly: same MSAC cost)
        # is broken by rounding; each side must then still be a correct result for its model.
        for r in (a, b):
            np.testing.assert_array_equal(r.inlier_mask, r.residuals_m**2 < _TH2)
        return
    assert a.iterations == b.iterations
    assert a.num_inliers == b.num_inliers
    assert a.inlier_ratio == b.inlier_ratio
    assert b.model.scale == pytest.approx(a.model.scale, rel=1e-10)
    assert b.model.yaw_rad == pytest.approx(a.model.yaw_rad, abs=1e-10)
    np.testing.assert_allclose(b.model.translation_m, a.model.translation_m, rtol=0, atol=1e-8)
    np.testing.assert_allclose(b.residuals_m, a.residuals_m, rtol=1e-9, atol=1e-8)
    assert b.inlier_mask.dtype == np.bool_ and b.residuals_m.dtype == np.float64


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(2, 3000),
    outlier_ratio=st.floats(0.0, 0.9),
    informative=st.booleans(),
    weights=st.sampled_from(["given", "none", "ignored"]),
    weighted_refit=st.booleans(),
    layout=st.sampled_from(["nadir", "forward"]),
    lo_iterations=st.integers(0, 5),
    batch_size=st.sampled_from([1, 7, 32, 100]),
    pool_fraction=st.sampled_from([0.01, 0.1, 0.5, 1.0]),
)
def test_kernel_agrees_with_numpy(
    seed: int,
    n: int,
    outlier_ratio: float,
    informative: bool,
    weights: str,
    weighted_refit: bool,
    layout: str,
    lo_iterations: int,
    batch_size: int,
    pool_fraction: float,
) -> None:
    rng = np.random.default_rng(seed)
    p = make_problem(rng, n, outlier_ratio, 0.5, layout=layout, informative_weights=informative)
    cfg = RansacConfig(
        seed=seed % 1000,
        use_weights=weights != "ignored",
        weighted_refit=weighted_refit,
        lo_iterations=lo_iterations,
        batch_size=batch_size,
        initial_pool_fraction=pool_fraction,
    )
    w = None if weights == "none" else p.weights
    _assert_same(*_both(p.source, p.target, w, config=cfg))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    yaw_offset_rad=st.floats(-3.0, 3.0),
    yaw_tolerance_rad=st.floats(0.01, 3.2),
    scale_lo=st.floats(0.1, 1.5),
    scale_span=st.floats(0.0, 3.0),
    position_offset_m=st.floats(-200.0, 200.0),
    position_sigma_m=st.floats(0.5, 100.0),
    which=st.sets(st.sampled_from(["scale", "yaw", "position"]), min_size=1),
)
def test_kernel_agrees_with_numpy_under_priors(
    seed: int,
    yaw_offset_rad: float,
    yaw_tolerance_rad: float,
    scale_lo: float,
    scale_span: float,
    position_offset_m: float,
    position_sigma_m: float,
    which: set[str],
) -> None:
    rng = np.random.default_rng(seed)
    p = make_problem(rng, 500, 0.5, 0.5, layout="nadir", yaw_rad=0.3)
    kw: dict[str, Any] = {}
    if "scale" in which:
        kw.update(scale_min=scale_lo, scale_max=scale_lo + scale_span)
    if "yaw" in which:
        kw.update(yaw_rad=0.3 + yaw_offset_rad, yaw_tolerance_rad=yaw_tolerance_rad)
    if "position" in which:
        cov = np.array([[1.0, 0.3], [0.3, 0.5]]) * position_sigma_m**2
        kw.update(
            position_en_m=p.truth.translation_m + position_offset_m,
            position_cov_m2=cov,
            position_gate_n_sigma=3.0,
        )
    priors = HypothesisPriors(**kw)
    cfg = RansacConfig(seed=seed % 1000, max_iterations=300)
    _assert_same(*_both(p.source, p.target, p.weights, config=cfg, priors=priors))


def test_kernel_agrees_beyond_one_block_of_draws() -> None:
    """More than 4096 hypotheses: the seeded stream spans several cached blocks."""
    p = make_problem(np.random.default_rng(9), 300, 0.95, 0.5, informative_weights=False)
    cfg = RansacConfig(max_iterations=9000, confidence=0.999999, batch_size=500)
    a, b = _both(p.source, p.target, p.weights, config=cfg)
    assert isinstance(a, RansacResult) and a.iterations > 4096
    _assert_same(a, b)


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "nan_source",
        "inf_target",
        "length_mismatch",
        "nan_weights",
        "negative_weights",
        "zero_weights",
        "one_point",
        "coincident",
        "bad_shape",
        "ignored_bad_weights",
        "weights_length",
    ],
)
def test_kernel_errors_match_numpy(case: str) -> None:
    rng = np.random.default_rng(0)
    src, dst, w = rng.random((10, 2)), rng.random((10, 2)), rng.random(10)
    cfg = RansacConfig()
    args: dict[str, tuple[Any, ...]] = {
        "empty": (np.empty((0, 2)), np.empty((0, 2)), None),
        "nan_source": (np.where(np.eye(10, 2) > 0, np.nan, src), dst, w),
        "inf_target": (src, np.where(np.eye(10, 2) > 0, np.inf, dst), w),
        "length_mismatch": (src, dst[:5], w),
        "nan_weights": (src, dst, np.full(10, np.nan)),
        "negative_weights": (src, dst, -w),
        "zero_weights": (src, dst, np.zeros(10)),
        "one_point": (src[:1], dst[:1], None),
        "coincident": (np.ones((10, 2)), dst, w),
        "bad_shape": (src.ravel(), dst, w),
        "ignored_bad_weights": (src, dst, np.full(10, np.inf)),
        "weights_length": (src, dst, w[:3]),
    }
    if case == "ignored_bad_weights":
        cfg = RansacConfig(use_weights=False)
    a, b = _both(*args[case], config=cfg)
    assert isinstance(a, Exception), a
    _assert_same(a, b)


def test_non_contiguous_and_integer_inputs() -> None:
    p = make_problem(np.random.default_rng(2), 400, 0.5, 0.5)
    src_f = np.asfortranarray(p.source)
    dst_strided = np.repeat(p.target, 2, axis=0)[::2]
    ref = ransac_similarity(p.source, p.target, p.weights)
    res = ransac_similarity(src_f, dst_strided, list(p.weights))
    _assert_same(ref, res)
    ints = ransac_similarity(np.round(p.source).astype(np.int32), np.round(p.target), None)
    assert ints.num_inliers > 100


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.sampled_from([0.0, 0.1, 0.5, 0.5, 0.9, 1.0]) | st.floats(0, 1), min_size=1, max_size=300
    ),
    fraction=st.floats(0.0, 1.0),
)
def test_pool_selection_identical(values: list[float], fraction: float) -> None:
    """Both implementations sample from the same pool: top weights, ties to lower indices."""
    w = np.array(values)
    pool = max(1, min(len(w), round(fraction * len(w))))
    expected = ransac._pool_indices(w, pool)
    out = np.empty(len(w), dtype=np.intp)
    m = kernel.select_pool(w.copy(), pool, out)
    np.testing.assert_array_equal(out[:m], expected)
    assert len(expected) == pool
    assert np.all(np.diff(expected) > 0)
    rest = np.setdiff1d(np.arange(len(w)), expected)
    if rest.size:
        assert w[expected].min() >= w[rest].max()
    k = pool - 1
    assert kernel._kth_smallest(w.copy(), k) == np.sort(w)[k]


def test_auto_falls_back_to_numpy_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    p = make_problem(np.random.default_rng(1), 300, 0.5, 0.5)
    fast = ransac_similarity(p.source, p.target, p.weights)
    monkeypatch.setattr(ransac, "_kernel_module", None)
    monkeypatch.setattr(ransac, "_kernel_error", "numba is not installed (test)")
    assert ransac.resolve_implementation(RansacConfig()) == "numpy"
    assert ransac.describe_implementation() == "numpy (numba is not installed (test))"
    assert ransac.warm_up_in_background() is None
    _assert_same(fast, ransac_similarity(p.source, p.target, p.weights))
    with pytest.raises(ImportError, match="pip install numba"):
        ransac_similarity(p.source, p.target, p.weights, RansacConfig(implementation="numba"))
    with pytest.raises(ImportError, match="pip install numba"):
        ransac.resolve_implementation(RansacConfig(implementation="numba"))


def test_auto_does_not_wait_for_a_compiling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """While another thread compiles, "auto" solves on numpy; "numba" waits for the kernel."""
    p = make_problem(np.random.default_rng(1), 300, 0.5, 0.5)
    loaded = ransac._kernel_module
    monkeypatch.setattr(ransac, "_kernel_module", None)
    assert ransac.describe_implementation() == "numba (not loaded yet)"
    ransac._kernel_lock.acquire()
    try:
        assert ransac.describe_implementation() == "numpy (numba kernel compiling)"
        res = ransac_similarity(p.source, p.target, p.weights)  # must not block
        assert ransac._kernel_module is None
        waiter = threading.Thread(
            target=ransac_similarity,
            args=(p.source, p.target, p.weights, RansacConfig(implementation="numba")),
        )
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive()  # blocked on the lock
    finally:
        monkeypatch.setattr(ransac, "_kernel_module", loaded)
        ransac._kernel_lock.release()
    waiter.join(30)
    assert not waiter.is_alive()
    assert ransac.describe_implementation() == "numba"
    _assert_same(res, ransac_similarity(p.source, p.target, p.weights))


def test_implementation_names_and_validation() -> None:
    assert ransac.resolve_implementation(RansacConfig(implementation="numpy")) == "numpy"
    assert ransac.resolve_implementation(RansacConfig(implementation="auto")) == "numba"
    assert ransac.describe_implementation(RansacConfig(implementation="numpy")) == "numpy"
    assert ransac.warm_up_in_background() is None  # already loaded
    with pytest.raises(ValueError, match="implementation"):
        RansacConfig(implementation="cuda")  # type: ignore[arg-type]
    assert math.isfinite(ransac_similarity(np.eye(2), np.eye(2)).cost)


@pytest.mark.slow
def test_kernel_compiles_into_and_loads_from_a_cache_dir(tmp_path: Any) -> None:
    """A fresh process compiles into NUMBA_CACHE_DIR (a read-only install's case), the next
    one loads from it; both end with the kernel loaded."""
    import os
    import subprocess
    import sys

    from cvgl_ros.tools.benchmarks.core import _LOAD_SNIPPET

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", _LOAD_SNIPPET],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout.strip()
        assert float(out) > 0.0, out
        assert any(p.suffix == ".nbi" for p in tmp_path.rglob("*"))


def test_parameter_vectors_follow_the_kernel_layout() -> None:
    cov = np.array([[4.0, 1.0], [1.0, 9.0]])
    priors = HypothesisPriors(
        scale_min=0.5,
        scale_max=2.0,
        yaw_rad=0.3,
        yaw_tolerance_rad=0.2,
        position_en_m=np.array([10.0, -5.0]),
        position_cov_m2=cov,
        position_gate_n_sigma=4.0,
    )
    cfg = RansacConfig(
        inlier_threshold_m=2.0,
        confidence=0.99,
        min_sample_distance_m=0.1,
        max_iterations=77,
        batch_size=9,
        lo_iterations=3,
        weighted_refit=True,
    )
    params, flags = ransac._kernel_params(cfg, priors)
    assert params.shape == (kernel.NUM_PARAMS,) and flags.shape == (kernel.NUM_FLAGS,)
    info = np.linalg.inv(cov)
    expected_params = {
        kernel.P_TH2: 4.0,
        kernel.P_CONFIDENCE: 0.99,
        kernel.P_MIN_D2: 0.01,
        kernel.P_SCALE_MIN: 0.5,
        kernel.P_SCALE_MAX: 2.0,
        kernel.P_YAW_COS: math.cos(0.3),
        kernel.P_YAW_SIN: math.sin(0.3),
        kernel.P_YAW_TOL: 0.2,
        kernel.P_POS_E: 10.0,
        kernel.P_POS_N: -5.0,
        kernel.P_INFO_EE: info[0, 0],
        kernel.P_INFO_EN: info[0, 1],
        kernel.P_INFO_NN: info[1, 1],
        kernel.P_GATE2: 16.0,
    }
    for index, value in expected_params.items():
        assert params[index] == pytest.approx(value)
    expected_flags = {
        kernel.F_MAX_ITERATIONS: 77,
        kernel.F_BATCH: 9,
        kernel.F_LO_ITERATIONS: 3,
        kernel.F_WEIGHTED_REFIT: 1,
        kernel.F_HAS_SCALE: 1,
        kernel.F_HAS_YAW: 1,
        kernel.F_HAS_POSITION: 1,
    }
    for index, value in expected_flags.items():
        assert flags[index] == value
    # Cached per (config, priors) object, read-only.
    assert ransac._kernel_params(cfg, priors)[0] is params
    assert not params.flags.writeable
