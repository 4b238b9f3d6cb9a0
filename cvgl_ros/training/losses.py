"""Training losses: Virtual Correspondence Error and the two infoNCE correspondence losses.

Frames: ground points ``g`` are in the gravity-aligned body frame (x forward, y left, metres
when depth is metric); aerial points ``a`` are (east, north) metres from the aerial patch centre;
the ground-truth similarity maps ``a = s_gt R(yaw_gt) g + t_gt``.
"""

from __future__ import annotations

import torch

from cvgl_ros.training.procrustes import SimilarityBatch, rotation_2d


def virtual_grid_m(
    extent_m: float,
    points_per_side: int,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A square grid of virtual points in the body frame.

    Args:
        extent_m: half side of the square, metres (points span ``[-extent_m, extent_m]^2``).
        points_per_side: grid points along each side (>= 2).
        device: torch device of the result.
        dtype: torch dtype of the result.

    Returns:
        (points_per_side**2, 2) body-frame points, metres.

    Raises:
        ValueError: on a non-positive extent or fewer than 2 points per side.
    """
    if not extent_m > 0:
        raise ValueError(f"extent_m must be > 0, got {extent_m}")
    if points_per_side < 2:
        raise ValueError(f"points_per_side must be >= 2, got {points_per_side}")
    axis = torch.linspace(-extent_m, extent_m, points_per_side, device=device, dtype=dtype)
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


def ground_truth_similarity(
    yaw_rad: torch.Tensor, translation_m: torch.Tensor, scale: torch.Tensor
) -> SimilarityBatch:
    """Build a :class:`SimilarityBatch` from (B,) yaw, (B, 2) translation and (B,) scale."""
    return SimilarityBatch(
        scale=scale, yaw_rad=yaw_rad, rotation=rotation_2d(yaw_rad), translation_m=translation_m
    )


def virtual_correspondence_error(
    estimate: SimilarityBatch,
    truth: SimilarityBatch,
    extent_m: float = 10.0,
    points_per_side: int = 5,
) -> torch.Tensor:
    """Virtual Correspondence Error: mean distance between virtual points moved by both poses.

    A grid of virtual points around the camera (body frame) is mapped into the aerial frame by
    the estimated and by the ground-truth similarity; the loss is the mean Euclidean distance
    between the two images of each point. It weighs translation and rotation errors in one
    metric unit (a yaw error of ``δ`` costs about ``δ * extent_m``). Where the ground-truth
    scale is unknown (NaN, relative depth), the estimated scale (detached) is used for it, so
    only the pose is supervised.

    Args:
        estimate: the fitted similarity, batch B.
        truth: the ground-truth similarity, batch B.
        extent_m: half side of the virtual grid, metres.
        points_per_side: grid resolution.

    Returns:
        (B,) loss per batch element, metres.
    """
    grid = virtual_grid_m(
        extent_m, points_per_side, estimate.scale.device, estimate.translation_m.dtype
    )
    pts = grid[None].expand(estimate.scale.shape[0], -1, -1)
    gt_scale = torch.where(torch.isfinite(truth.scale), truth.scale, estimate.scale.detach())
    truth_fixed = SimilarityBatch(gt_scale, truth.yaw_rad, truth.rotation, truth.translation_m)
    diff = estimate.apply(pts) - truth_fixed.apply(pts)
    return torch.sqrt((diff * diff).sum(dim=-1) + 1e-12).mean(dim=1)


def _true_distances_m(
    ground_points: torch.Tensor, aerial_points_m: torch.Tensor, truth: SimilarityBatch
) -> torch.Tensor:
    """(B, Ng, Na) metric distance between each ground cell moved by the truth and each
    aerial cell."""
    projected = truth.apply(ground_points)  # (B, Ng, 2)
    return torch.cdist(projected, aerial_points_m)


def info_nce_ground_to_aerial(
    logits: torch.Tensor,
    ground_points: torch.Tensor,
    ground_valid: torch.Tensor,
    aerial_points_m: torch.Tensor,
    truth: SimilarityBatch,
    positive_radius_m: float,
) -> torch.Tensor:
    """infoNCE from ground cells to aerial cells, positives from the true pose.

    Each valid ground cell, moved into the aerial frame by the ground-truth similarity, has the
    nearest aerial cell as its positive (when it lies within ``positive_radius_m``); all other
    aerial cells are negatives.

    Args:
        logits: (B, Ng, Na) similarity / temperature (before any softmax).
        ground_points: (B, Ng, 2) lifted ground-cell points, body frame, metres.
        ground_valid: (B, Ng) bool, cells with a usable lifted point.
        aerial_points_m: (B, Na, 2) aerial-cell centres, (east, north) metres from the centre.
        truth: ground-truth similarity (its scale must be finite: metric depth).
        positive_radius_m: largest distance to count the nearest aerial cell as the positive.

    Returns:
        Scalar mean loss over rows with a positive (0 when there is none).
    """
    with torch.no_grad():
        dist = _true_distances_m(ground_points, aerial_points_m, truth)
        best_dist, positive = dist.min(dim=2)  # (B, Ng)
        has_positive = ground_valid & (best_dist <= positive_radius_m)
    log_p = torch.log_softmax(logits.float(), dim=2)
    picked = torch.gather(log_p, 2, positive[..., None])[..., 0]  # (B, Ng)
    count = has_positive.sum()
    if count == 0:
        return logits.sum() * 0.0
    return -(picked * has_positive).sum() / count


def info_nce_aerial_to_ground(
    logits: torch.Tensor,
    ground_points: torch.Tensor,
    ground_valid: torch.Tensor,
    aerial_points_m: torch.Tensor,
    truth: SimilarityBatch,
    positive_radius_m: float,
    exclusion_radius_m: float,
) -> torch.Tensor:
    """infoNCE from aerial cells to ground cells with a local neighbourhood excluded.

    Each aerial cell takes as positive the valid ground cell whose true projection is nearest
    (within ``positive_radius_m``). Ground cells whose true projection lies within
    ``exclusion_radius_m`` of the aerial cell are excluded from the negatives: they see the
    same spot of the ground (neighbouring pixels at similar depth) and must not be pushed away.

    Args:
        logits: (B, Ng, Na) similarity / temperature.
        ground_points: (B, Ng, 2) lifted ground-cell points, body frame, metres.
        ground_valid: (B, Ng) bool.
        aerial_points_m: (B, Na, 2) aerial-cell centres, metres.
        truth: ground-truth similarity (finite scale).
        positive_radius_m: largest distance for the positive.
        exclusion_radius_m: neighbourhood radius excluded from the negatives (>= the positive
            radius in practice).

    Returns:
        Scalar mean loss over aerial cells with a positive (0 when there is none).
    """
    with torch.no_grad():
        dist = _true_distances_m(ground_points, aerial_points_m, truth)  # (B, Ng, Na)
        dist = torch.where(ground_valid[:, :, None], dist, torch.full_like(dist, torch.inf))
        best_dist, positive = dist.min(dim=1)  # (B, Na)
        has_positive = best_dist <= positive_radius_m
        is_positive = torch.zeros_like(dist, dtype=torch.bool)
        is_positive.scatter_(1, positive[:, None, :], True)
        keep = ground_valid[:, :, None] & ((dist >= exclusion_radius_m) | is_positive)
    masked = torch.where(keep, logits.float(), torch.full_like(logits, -torch.inf).float())
    log_p = torch.log_softmax(masked, dim=1)  # over ground cells
    picked = torch.gather(log_p, 1, positive[:, None, :])[:, 0, :]  # (B, Na)
    picked = torch.where(has_positive, picked, torch.zeros_like(picked))
    count = has_positive.sum()
    if count == 0:
        return logits.sum() * 0.0
    return -picked.sum() / count
