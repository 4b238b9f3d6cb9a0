"""One differentiable training step and the numpy-RANSAC validation the node uses.

Training: tokens -> head -> dual softmax -> sampled correspondences -> weighted Procrustes ->
Virtual Correspondence Error, plus the infoNCE losses when depth is metric.

Validation: the same probabilities, but matches are chosen as the node chooses them
(:func:`cvgl_ros.models.matching.select_matches`: top-K, mutual) and the pose comes from the
core's RANSAC + covariance + gating (:func:`cvgl_ros.core.localizer.solve_patch_pose`), so the
reported errors are those the node would have.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from cvgl_ros.core.config import LocalizerConfig, RansacConfig
from cvgl_ros.core.errors import CoreError
from cvgl_ros.core.localizer import solve_patch_pose
from cvgl_ros.core.types import PoseStatus
from cvgl_ros.models.matching import select_matches
from cvgl_ros.training.config import LossConfig, OptimConfig
from cvgl_ros.training.losses import (
    ground_truth_similarity,
    info_nce_aerial_to_ground,
    info_nce_ground_to_aerial,
    virtual_correspondence_error,
)
from cvgl_ros.training.model import TrainableMatcher
from cvgl_ros.training.procrustes import weighted_procrustes_2d
from cvgl_ros.training.sampling import gather_points, sample_correspondences

LOGGER = logging.getLogger(__name__)


def compute_losses(
    model: TrainableMatcher,
    batch: dict[str, torch.Tensor],
    loss_cfg: LossConfig,
    optim_cfg: OptimConfig,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Forward pass and losses of one batch.

    Args:
        model: head + dual softmax.
        batch: output of :func:`cvgl_ros.training.cache.collate`, on the model's device.
        loss_cfg: loss weights and radii.
        optim_cfg: sampling settings.
        generator: random generator for multinomial sampling.

    Returns:
        ``loss`` (the weighted total, scalar) and its parts ``vce_m``, ``nce_g2a``,
        ``nce_a2g`` (detached scalars), plus ``position_error_m`` / ``yaw_error_deg`` of the
        differentiable Procrustes (detached, batch means).
    """
    logits, probs = model(batch["ground_tokens"], batch["aerial_tokens"])
    # Geometry and losses in float32 even under autocast: the Procrustes needs the precision.
    with torch.autocast(logits.device.type, enabled=False):
        return _losses_from_scores(
            logits.float(), probs.float(), batch, loss_cfg, optim_cfg, generator
        )


def _losses_from_scores(
    logits: torch.Tensor,
    probs: torch.Tensor,
    batch: dict[str, torch.Tensor],
    loss_cfg: LossConfig,
    optim_cfg: OptimConfig,
    generator: torch.Generator | None,
) -> dict[str, torch.Tensor]:
    samples = sample_correspondences(
        probs,
        optim_cfg.num_correspondences,
        optim_cfg.sampling,  # type: ignore[arg-type]
        ground_valid=batch["ground_valid"],
        aerial_valid=batch["aerial_valid"],
        generator=generator,
    )
    g = gather_points(batch["ground_points_m"], samples.ground_index)
    a = gather_points(batch["aerial_points_m"], samples.aerial_index)
    estimate = weighted_procrustes_2d(g, a, samples.weights, with_scale=optim_cfg.fit_scale)
    truth = ground_truth_similarity(batch["yaw_enu_rad"], batch["camera_en_m"], batch["scale"])
    vce = virtual_correspondence_error(
        estimate, truth, loss_cfg.vce_extent_m, loss_cfg.vce_points_per_side
    )
    total = loss_cfg.vce_weight * vce.mean()
    zero = logits.new_zeros(())
    nce_g2a, nce_a2g = zero, zero
    metric = torch.isfinite(batch["scale"])
    if loss_cfg.nce_weight > 0.0 and bool(metric.any()):
        idx = torch.nonzero(metric).flatten()
        truth_m = ground_truth_similarity(
            batch["yaw_enu_rad"][idx], batch["camera_en_m"][idx], batch["scale"][idx]
        )
        cell = batch["aerial_cell_m"][idx]
        # Radii in metres; one value per batch (cells may differ between datasets).
        pos_r = float(loss_cfg.positive_radius_cells * cell.max())
        excl_r = float(loss_cfg.exclusion_radius_cells * cell.max())
        # The metric rows, gathered once for both directions.
        rows = (
            logits[idx],
            batch["ground_points_m"][idx],
            batch["ground_valid"][idx],
            batch["aerial_points_m"][idx],
            truth_m,
        )
        nce_g2a = info_nce_ground_to_aerial(*rows, pos_r)
        nce_a2g = info_nce_aerial_to_ground(*rows, pos_r, excl_r)
        total = total + loss_cfg.nce_weight * (nce_g2a + nce_a2g)
    with torch.no_grad():
        pos_err = torch.linalg.norm(estimate.translation_m - batch["camera_en_m"], dim=-1)
        yaw_err = (
            torch.remainder(estimate.yaw_rad - batch["yaw_enu_rad"] + math.pi, 2 * math.pi)
            - math.pi
        )
    return {
        "loss": total,
        "vce_m": vce.mean().detach(),
        "nce_g2a": nce_g2a.detach(),
        "nce_a2g": nce_a2g.detach(),
        "position_error_m": pos_err.mean(),
        "yaw_error_deg": torch.rad2deg(yaw_err.abs()).mean(),
    }


@dataclass(frozen=True)
class ValidationResult:
    """Pose errors of the node's pipeline on a validation set.

    Attributes:
        position_errors_m: (N,) float64 per sample, metres; inf where no pose was found.
        yaw_errors_deg: (N,) float64 per sample, degrees; inf where no pose was found.
        num_failed: samples where RANSAC found no pose.
        num_gated_ok: samples whose pose passed the node's gates (would be published).
    """

    position_errors_m: np.ndarray
    yaw_errors_deg: np.ndarray
    num_failed: int
    num_gated_ok: int = 0

    @property
    def median_position_error_m(self) -> float:
        """Median position error (failures count as infinitely wrong), metres."""
        return (
            float(np.median(self.position_errors_m)) if self.position_errors_m.size else math.inf
        )

    @property
    def median_yaw_error_deg(self) -> float:
        """Median yaw error (failures count as infinitely wrong), degrees."""
        return float(np.median(self.yaw_errors_deg)) if self.yaw_errors_deg.size else math.inf

    def recall(self, position_m: float, yaw_deg: float | None = None) -> float:
        """Share of samples within ``position_m`` (and ``yaw_deg`` when given)."""
        if not self.position_errors_m.size:
            return 0.0
        ok = self.position_errors_m <= position_m
        if yaw_deg is not None:
            ok &= self.yaw_errors_deg <= yaw_deg
        return float(ok.mean())

    def to_state(self) -> dict[str, object]:
        """Plain data for a training state file."""
        return {
            "position_errors_m": self.position_errors_m.tolist(),
            "yaw_errors_deg": self.yaw_errors_deg.tolist(),
            "num_failed": self.num_failed,
            "num_gated_ok": self.num_gated_ok,
        }

    @classmethod
    def from_state(cls, data: dict[str, object]) -> ValidationResult:
        """Inverse of :meth:`to_state`."""
        return cls(
            np.asarray(data["position_errors_m"], dtype=np.float64),
            np.asarray(data["yaw_errors_deg"], dtype=np.float64),
            int(data["num_failed"]),  # type: ignore[call-overload]
            int(data["num_gated_ok"]),  # type: ignore[call-overload]
        )

    def as_dict(self) -> dict[str, float]:
        """Flat metrics for logs."""
        return {
            "val_median_position_m": self.median_position_error_m,
            "val_median_yaw_deg": self.median_yaw_error_deg,
            "val_recall_5m": self.recall(5.0),
            "val_failed": float(self.num_failed),
            "val_published": float(self.num_gated_ok),
        }


@torch.no_grad()
def validate(
    model: TrainableMatcher,
    batches: Iterable[dict[str, torch.Tensor]],
    device: torch.device,
    top_k: int = 256,
    mutual: bool = True,
    inlier_threshold_cells: float = 1.0,
    seed: int = 0,
) -> ValidationResult:
    """Pose errors of the node's match selection + RANSAC on prepared samples.

    Args:
        model: the matcher being trained.
        batches: batches of prepared validation samples (:func:`collate` output, on the CPU),
            e.g. a data loader or ``[collate(samples)]``.
        device: device of the model.
        top_k: correspondences offered to RANSAC (the node's ``top_k``).
        mutual: mutual filtering (the node's ``mutual``).
        inlier_threshold_cells: RANSAC inlier threshold in aerial cell sizes (a cell is the
            resolution of the matches).
        seed: RANSAC seed.

    Returns:
        Per-sample errors.
    """
    was_training = model.training
    model.eval()
    pos_errors: list[float] = []
    yaw_errors: list[float] = []
    failed = 0
    gated_ok = 0
    try:
        for batch in batches:
            _, probs = model(batch["ground_tokens"].to(device), batch["aerial_tokens"].to(device))
            probs_np = probs.float().cpu().numpy()
            masks = (batch["ground_valid"][:, :, None] & batch["aerial_valid"][:, None, :]).numpy()
            for i in range(probs_np.shape[0]):
                err = _pose_error(
                    probs_np[i] * masks[i],
                    batch["ground_points_m"][i].numpy().astype(np.float64),
                    batch["aerial_points_m"][i].numpy().astype(np.float64),
                    batch["camera_en_m"][i].numpy().astype(np.float64),
                    float(batch["yaw_enu_rad"][i]),
                    float(batch["aerial_cell_m"][i]),
                    top_k,
                    mutual,
                    inlier_threshold_cells,
                    seed,
                )
                if err is None:
                    failed += 1
                    pos_errors.append(math.inf)
                    yaw_errors.append(math.inf)
                else:
                    pos_errors.append(err[0])
                    yaw_errors.append(err[1])
                    gated_ok += int(err[2])
    finally:
        model.train(was_training)
    return ValidationResult(np.asarray(pos_errors), np.asarray(yaw_errors), failed, gated_ok)


def _pose_error(
    probs: np.ndarray,
    ground_points_m: np.ndarray,
    aerial_points_m: np.ndarray,
    camera_en_m: np.ndarray,
    yaw_enu_rad: float,
    aerial_cell_m: float,
    top_k: int,
    mutual: bool,
    inlier_threshold_cells: float,
    seed: int,
) -> tuple[float, float, bool] | None:
    """(position error m, yaw error deg, passed the node's gates) of one sample, or None
    when no pose is found."""
    rows, cols, weights = select_matches(probs, top_k, mutual=mutual, min_probability=0.0)
    keep = weights > 0.0
    rows, cols, weights = rows[keep], cols[keep], weights[keep]
    if rows.size < 2:
        return None
    config = LocalizerConfig(
        ransac=RansacConfig(inlier_threshold_m=inlier_threshold_cells * aerial_cell_m, seed=seed)
    )
    # The patch is centred on the prior; its half extent bounds where the camera can be.
    half_extent_m = 0.5 * (float(np.ptp(aerial_points_m[:, 0])) + aerial_cell_m)
    prior_cov = np.eye(2) * (half_extent_m / config.ransac.position_prior_gate_n_sigma) ** 2
    try:
        solution = solve_patch_pose(
            ground_points_m[rows], aerial_points_m[cols], weights, config, np.zeros(2), prior_cov
        )
    except CoreError as exc:
        LOGGER.debug("no pose: %s", exc)
        return None
    pos = float(np.linalg.norm(solution.position_en_m - camera_en_m))
    dyaw = math.remainder(solution.yaw_enu_rad - yaw_enu_rad, 2.0 * math.pi)
    return pos, abs(math.degrees(dyaw)), solution.gate.status is PoseStatus.OK
