"""Gating: each reason is triggered by a crafted input; configs validate their fields."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cvgl_ros.core.config import (
    CovarianceConfig,
    GatingConfig,
    LiftingConfig,
    LocalizerConfig,
    RansacConfig,
)
from cvgl_ros.core.errors import InvalidInputError, NoValidHypothesisError
from cvgl_ros.core.gating import gate_pose
from cvgl_ros.core.localizer import solve_patch_pose
from cvgl_ros.core.synthetic import make_problem
from cvgl_ros.core.types import PoseStatus

GOOD = {
    "num_inliers": 100,
    "inlier_ratio": 0.6,
    "scale": 1.0,
    "position_en_m": np.array([1.0, -1.0]),
    "cov_en_yaw": np.diag([0.25, 0.25, 1e-4]),
    "prior_en_m": np.zeros(2),
    "prior_cov_en_m2": np.eye(2) * 9.0,
    "config": GatingConfig(scale_min=0.5, scale_max=2.0),
}


def test_good_pose_passes() -> None:
    g = gate_pose(**GOOD)  # type: ignore[arg-type]
    assert g.ok and g.reasons == ()
    assert g.prior_distance_n_sigma == pytest.approx(math.sqrt(2.0 / 9.25))


@pytest.mark.parametrize(
    ("change", "status", "word"),
    [
        ({"num_inliers": 5}, PoseStatus.TOO_FEW_INLIERS, "min_inliers"),
        ({"inlier_ratio": 0.05}, PoseStatus.LOW_INLIER_RATIO, "min_inlier_ratio"),
        ({"scale": 50.0}, PoseStatus.SCALE_OUT_OF_BOUNDS, "scale"),
        ({"scale": 0.01}, PoseStatus.SCALE_OUT_OF_BOUNDS, "scale"),
        ({"position_en_m": np.array([40.0, 0.0])}, PoseStatus.OUTSIDE_PRIOR, "GNSS prior"),
        (
            {"yaw_rad": 1.0, "yaw_prior_rad": -1.0, "yaw_prior_sigma_rad": 0.1},
            PoseStatus.OUTSIDE_PRIOR,
            "yaw prior",
        ),
    ],
)
def test_each_gate_triggers(change: dict[str, object], status: PoseStatus, word: str) -> None:
    g = gate_pose(**{**GOOD, **change})  # type: ignore[arg-type]
    assert g.status is status
    assert len(g.reasons) == 1 and word in g.reasons[0]


def test_several_reasons_keep_the_first_status() -> None:
    g = gate_pose(**{**GOOD, "num_inliers": 3, "inlier_ratio": 0.01, "scale": 100.0})  # type: ignore[arg-type]
    assert g.status is PoseStatus.TOO_FEW_INLIERS
    assert len(g.reasons) == 3


def test_nan_pose_never_passes() -> None:
    g = gate_pose(**{**GOOD, "position_en_m": np.array([np.nan, 0.0])})  # type: ignore[arg-type]
    assert g.status is PoseStatus.OUTSIDE_PRIOR
    g = gate_pose(**{**GOOD, "cov_en_yaw": np.full((3, 3), np.nan)})  # type: ignore[arg-type]
    assert g.status is PoseStatus.DEGENERATE and "covariance" in g.reasons[0]


def test_solver_gates_on_real_fits() -> None:
    rng = np.random.default_rng(3)
    p = make_problem(rng, 200, 0.85, 0.4, translation_m=np.array([3.0, 2.0]))
    cfg = LocalizerConfig(gating=GatingConfig(min_inlier_ratio=0.3))
    sol = solve_patch_pose(p.source, p.target, p.weights, cfg, np.zeros(2), np.eye(2) * 100.0)
    assert sol.gate.status is PoseStatus.LOW_INLIER_RATIO  # 15 % inliers < 30 %
    few = make_problem(rng, 10, 0.0, 0.4, translation_m=np.array([3.0, 2.0]))
    sol = solve_patch_pose(few.source, few.target, few.weights, cfg, np.zeros(2), np.eye(2))
    assert sol.gate.status is PoseStatus.TOO_FEW_INLIERS
    scaled = make_problem(rng, 200, 0.2, 0.4, scale=1.0, translation_m=np.array([3.0, 2.0]))
    tight = LocalizerConfig(gating=GatingConfig(scale_min=0.05, scale_max=0.5))
    # True scale 1 is outside [0.05, 0.5]: either no hypothesis survives the scale prior, or
    # only a chance fit of outliers does, and that one is gated.
    try:
        sol = solve_patch_pose(scaled.source, scaled.target, None, tight, np.zeros(2), np.eye(2))
    except NoValidHypothesisError as exc:
        assert exc.rejected_by_priors > 0
    else:
        assert not sol.gate.ok
        assert sol.ransac.num_inliers < 20


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (LiftingConfig, {"max_depth_m": -1.0}, "max_depth_m"),
        (LiftingConfig, {"min_height_m": 2.0, "max_height_m": 1.0}, "min_height_m"),
        (RansacConfig, {"inlier_threshold_m": 0.0}, "inlier_threshold_m"),
        (RansacConfig, {"confidence": 1.0}, "confidence"),
        (RansacConfig, {"max_iterations": 0}, "max_iterations"),
        (RansacConfig, {"seed": -1}, "seed"),
        (CovarianceConfig, {"base_inflation": 0.5}, "base_inflation"),
        (CovarianceConfig, {"min_sigma_m": math.nan}, "min_sigma_m"),
        (GatingConfig, {"min_inliers": 1}, "min_inliers"),
        (GatingConfig, {"scale_min": 2.0, "scale_max": 1.0}, "scale_min"),
        (GatingConfig, {"min_inlier_ratio": 1.5}, "min_inlier_ratio"),
        (GatingConfig, {"prior_gate_n_sigma": 0.0}, "prior_gate_n_sigma"),
    ],
)
def test_config_validation_names_the_field(
    cls: type, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


def test_localizer_config_from_dict_round_trip() -> None:
    cfg = LocalizerConfig.from_dict(
        {"ransac": {"inlier_threshold_m": 2.0, "seed": 5}, "gating": {"min_inliers": 20}}
    )
    assert cfg.ransac.inlier_threshold_m == 2.0 and cfg.gating.min_inliers == 20
    assert LocalizerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="inlier_threshold"):
        LocalizerConfig.from_dict({"ransac": {"inlier_treshold_m": 2.0}})
    with pytest.raises(ValueError, match="unknown"):
        LocalizerConfig.from_dict({"ransack": {}})


def test_solver_rejects_malformed_priors() -> None:
    p = make_problem(np.random.default_rng(0), 50, 0.0, 0.1)
    cfg = LocalizerConfig()
    with pytest.raises(InvalidInputError):
        solve_patch_pose(p.source, p.target, None, cfg, np.zeros(2), np.full((2, 2), np.nan))
    with pytest.raises(InvalidInputError):
        solve_patch_pose(p.source, p.target, None, cfg, np.zeros(3), np.eye(2))
    with pytest.raises(InvalidInputError):
        solve_patch_pose(np.full((50, 2), np.inf), p.target, None, cfg, np.zeros(2), np.eye(2))
