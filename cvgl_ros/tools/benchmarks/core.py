"""Benchmark suite ``core``: RANSAC similarity solve vs OpenCV on the same points.

For 512, 1024 and 4096 correspondences with 50 % outliers (inlier noise 0.5 m, threshold 3 m)
it times :func:`cvgl_ros.core.ransac.ransac_similarity` (default config: confidence 0.999,
local optimisation) and ``cv2.estimateAffinePartial2D(method=cv2.RANSAC)`` (the same 4-dof
similarity, default confidence 0.99, Levenberg-Marquardt refinement) on identical inputs in the
same run, and reports the median solve time, the ratio, and the mean position / yaw error of
both against the known truth. Two weight regimes: ``informative`` (match probabilities higher
for inliers, as a matcher gives) and ``uninformative`` (weights independent of inlier status;
the PROSAC ordering then gains nothing). Our solver is timed twice: as
configured by default (``implementation="auto"``: the numba kernel) and on the numpy reference
(``implementation="numpy"``). Full runs also time loading the compiled kernel in a fresh
process, from a cold cache (compilation) and from the warm on-disk cache. A last row reports
the NEES consistency of the covariance on simulated data.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from typing import Any

import numpy as np

from cvgl_ros.core.config import RansacConfig
from cvgl_ros.core.covariance import CHI2_3DOF_95
from cvgl_ros.core.geodesy import wrap_angle_rad
from cvgl_ros.core.ransac import ransac_similarity, resolve_implementation
from cvgl_ros.core.synthetic import make_problem, simulated_nees
from cvgl_ros.tools.benchmarks.timing import median_ms

THRESHOLD_M = 3.0
NOISE_M = 0.5
OUTLIER_RATIO = 0.5


def _compare(
    n: int, informative: bool, problems: int, reps: int, accuracy_problems: int
) -> list[dict[str, Any]]:
    """Rows for one size and weight regime.

    The first ``problems`` problems are timed (``reps`` calls each); accuracy is measured on
    ``accuracy_problems`` (>= ``problems``) with one solve each, and compared per problem
    (paired), so that "equal accuracy" is a statement with an error bar.
    """
    import cv2

    rng = np.random.default_rng(1000 + n + (0 if informative else 1))
    cfg = RansacConfig(inlier_threshold_m=THRESHOLD_M)
    cfg_np = replace(cfg, implementation="numpy")
    impl = resolve_implementation(cfg)
    ours_ms, numpy_ms, cv_ms = [], [], []
    pos_pairs, yaw_pairs = [], []
    cv_failures = 0
    for k in range(max(problems, accuracy_problems)):
        p = make_problem(
            rng,
            n,
            OUTLIER_RATIO,
            NOISE_M,
            layout="nadir",
            extent_m=150.0,
            informative_weights=informative,
        )
        src, dst, w = p.source, p.target, p.weights

        def ours(src: Any = src, dst: Any = dst, w: Any = w) -> Any:
            return ransac_similarity(src, dst, w, cfg)

        def ours_numpy(src: Any = src, dst: Any = dst, w: Any = w) -> Any:
            return ransac_similarity(src, dst, w, cfg_np)

        def opencv(src: Any = src, dst: Any = dst) -> Any:
            return cv2.estimateAffinePartial2D(
                src, dst, method=cv2.RANSAC, ransacReprojThreshold=THRESHOLD_M
            )

        res, (m, _) = ours(), opencv()  # also the warm-up calls
        if k < problems:
            ours_numpy()
            ours_ms.append(median_ms(ours, reps, warmup=0))
            numpy_ms.append(median_ms(ours_numpy, reps, warmup=0))
            cv_ms.append(median_ms(opencv, reps, warmup=0))
        if m is None:
            cv_failures += 1
            continue
        truth_t, truth_yaw = p.truth.translation_m, p.truth.yaw_rad
        pos_pairs.append(
            (
                float(np.linalg.norm(res.model.translation_m - truth_t)),
                float(np.linalg.norm(m[:, 2] - truth_t)),
            )
        )
        yaw_pairs.append(
            (
                abs(float(wrap_angle_rad(res.model.yaw_rad - truth_yaw))),
                abs(float(wrap_angle_rad(math.atan2(m[1, 0], m[0, 0]) - truth_yaw))),
            )
        )
    tag = f"n{n}_out50_{'informative' if informative else 'uninformative'}_weights"
    ours_name, cv_name = f"ransac_{tag}", f"opencv_{tag}"
    t_o, t_c = float(np.median(ours_ms)), float(np.median(cv_ms))
    t_np = float(np.median(numpy_ms))
    pos = np.array(pos_pairs).reshape(-1, 2)
    yaw = np.degrees(np.array(yaw_pairs).reshape(-1, 2))
    pos_o, pos_c = (float(v) for v in pos.mean(axis=0)) if len(pos) else (math.nan, math.nan)
    d_pos, se_pos = _paired(pos)
    d_yaw, se_yaw = _paired(yaw)
    verdict = (
        "equal within noise"
        if abs(d_pos) <= 2.0 * se_pos
        else ("ours better" if d_pos < 0 else "OpenCV better")
    )
    notes = (
        f"{impl} kernel; timing {problems} problems x {reps} reps; accuracy on {len(pos)} "
        f"problems: mean position error ours {pos_o:.4f} m vs OpenCV {pos_c:.4f} m, paired "
        f"difference {d_pos:+.4f} +- {2 * se_pos:.4f} m (2 s.e.: {verdict}); yaw difference "
        f"{d_yaw:+.4f} +- {2 * se_yaw:.4f} deg"
        + (f"; OpenCV failed {cv_failures}x" if cv_failures else "")
    )
    goal = "< 5 ms at n=1024; faster than OpenCV at equal or better accuracy"
    return [
        {"name": cv_name, "metric": "median_ms", "value": t_c, "notes": "cv2 baseline"},
        {
            "name": ours_name,
            "metric": "median_ms",
            "value": t_o,
            "baseline": cv_name,
            "ratio": t_o / t_c,
            "goal": goal if n == 1024 else "faster than OpenCV",
            "notes": notes,
        },
        {
            "name": f"ransac_numpy_{tag}",
            "metric": "median_ms",
            "value": t_np,
            "baseline": cv_name,
            "ratio": t_np / t_c,
            "notes": "the numpy reference implementation (fallback without numba)",
        },
        {"name": cv_name, "metric": "mean_position_error_m", "value": pos_c},
        {
            "name": ours_name,
            "metric": "mean_position_error_m",
            "value": pos_o,
            "baseline": cv_name,
            "ratio": pos_o / pos_c if pos_c > 0 else math.nan,
            "goal": "<= OpenCV",
            "notes": f"paired difference {d_pos:+.4f} +- {2 * se_pos:.4f} m: {verdict}",
        },
    ]


def _paired(errors: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of ``ours - OpenCV`` over (K, 2) paired errors."""
    if len(errors) < 2:
        return math.nan, math.nan
    d = errors[:, 0] - errors[:, 1]
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


_LOAD_SNIPPET = (
    "import time; t0 = time.perf_counter(); "
    "from cvgl_ros.core.ransac import load_compiled_kernel, compiled_kernel_error; "
    "k = load_compiled_kernel(); "
    "print(time.perf_counter() - t0 if k else 'unavailable: ' + str(compiled_kernel_error()))"
)


def kernel_load_seconds() -> tuple[float, float]:
    """(cold, warm) seconds to import and compile the numba kernel in a fresh process.

    ``cold`` compiles into an empty cache directory, ``warm`` loads from it (what a node start
    costs after the first one). NaN when the kernel is unavailable.
    """
    out = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for _ in range(2):
            text = subprocess.run(
                [sys.executable, "-c", _LOAD_SNIPPET],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            ).stdout.strip()
            out.append(float(text) if not text.startswith("unavailable") else math.nan)
    return out[0], out[1]


def nees_consistency(trials: int, seed: int = 2024) -> tuple[float, float, int, float, float]:
    """NEES consistency of the covariance on simulated solves.

    Returns:
        (fraction inside the chi2(3) 95 % bound, mean NEES, number of gated-OK solves, and the
        same fraction and mean for the un-inflated least-squares covariance).

    Simulated correspondences: 40-800 points, 0-75 % outliers, 0.2-1 m noise, relative depth
    error 0-5 %, forward and nadir layouts, metric and unknown scale.
    """
    v, r = simulated_nees(trials, seed)
    inside = float(np.mean(v < CHI2_3DOF_95))
    return inside, float(np.mean(v)), len(v), float(np.mean(r < CHI2_3DOF_95)), float(np.mean(r))


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the suite; ``quick`` uses fewer problems and repetitions."""
    problems, reps, accuracy = (3, 5, 6) if quick else (20, 30, 300)
    rows: list[dict[str, Any]] = []
    for informative in (True, False):
        for n in (512, 1024, 4096):
            rows.extend(_compare(n, informative, problems, reps, accuracy))
    if not quick:
        cold_s, warm_s = kernel_load_seconds()
        rows.append(
            {
                "name": "ransac_kernel_load",
                "metric": "cold_compile_s",
                "value": cold_s,
                "notes": "fresh process, empty numba cache: the first start after an install",
            }
        )
        rows.append(
            {
                "name": "ransac_kernel_load",
                "metric": "cached_load_s",
                "value": warm_s,
                "notes": "fresh process, warm numba cache: every later start",
            }
        )
    inside, mean, count, raw_inside, raw_mean = nees_consistency(200 if quick else 2000)
    rows.append(
        {
            "name": "covariance_nees_chi2_3dof",
            "metric": "fraction_inside_95pct",
            "value": inside,
            "goal": "about 0.95",
            "notes": (
                f"{count} gated-OK simulated solves; mean NEES {mean:.2f} (ideal 3); "
                f"un-inflated: {raw_inside:.3f} inside, mean {raw_mean:.2f}"
            ),
        }
    )
    return rows
