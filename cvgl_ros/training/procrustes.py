"""Differentiable, batched, weighted scale-aware 2-D Procrustes (Umeyama 1991) in torch.

This is the training twin of the numpy solver in :mod:`cvgl_ros.core.procrustes`: it solves

    a_i ≈ s R(yaw) g_i + t

for a rotation ``R`` (no reflection), a scale ``s > 0`` and a translation ``t`` minimising
``sum_i w_i |a_i - s R g_i - t|^2``. In 2-D the Umeyama solution with the reflection guard
(``S = diag(1, sign(det U det V))``) has a closed form that needs no SVD: with the weighted
cross-covariance ``Σ = Σ_i w_i a'_i g'_i^T / W`` of the centred points,

    yaw = atan2(Σ_21 - Σ_12, Σ_11 + Σ_22),   s = hypot(Σ_11 + Σ_22, Σ_21 - Σ_12) / σ_g^2,

which is what the SVD form gives (the trace of ``D S`` equals that hypotenuse), but with
smooth gradients everywhere except at the fully degenerate point, where an ``eps`` keeps them
finite. Weights are the sampled match probabilities, so gradients reach the matcher through them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SimilarityBatch:
    """A batch of 2-D similarities ``a = scale * R(yaw) g + t``.

    Attributes:
        scale: (B,) scale, unitless (metres of aerial per unit of lifted ground points).
        yaw_rad: (B,) rotation angle, radians, counter-clockwise (ENU yaw of the body +x axis
            when ``g`` is in the gravity-aligned body frame and ``a`` in east/north).
        rotation: (B, 2, 2) rotation matrices ``R(yaw)``.
        translation_m: (B, 2) translation, metres (camera position in the patch frame).
    """

    scale: torch.Tensor
    yaw_rad: torch.Tensor
    rotation: torch.Tensor
    translation_m: torch.Tensor

    def apply(self, points: torch.Tensor) -> torch.Tensor:
        """Map points with the similarity.

        Args:
            points: (B, N, 2) points in the source frame.

        Returns:
            (B, N, 2) ``scale * R points + t`` in the target frame.
        """
        rotated = torch.einsum("bij,bnj->bni", self.rotation, points)
        return self.scale[:, None, None] * rotated + self.translation_m[:, None, :]


def rotation_2d(yaw_rad: torch.Tensor) -> torch.Tensor:
    """(B,) angles, radians -> (B, 2, 2) counter-clockwise rotation matrices."""
    c, s = torch.cos(yaw_rad), torch.sin(yaw_rad)
    return torch.stack([torch.stack([c, -s], dim=-1), torch.stack([s, c], dim=-1)], dim=-2)


def weighted_procrustes_2d(
    source: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor,
    eps: float = 1e-9,
    with_scale: bool = True,
) -> SimilarityBatch:
    """Weighted 2-D similarity (or rigid) fit, batched and differentiable.

    Args:
        source: (B, N, 2) float, source points ``g`` (e.g. lifted ground points, gravity-aligned
            body frame, metres or relative units).
        target: (B, N, 2) float, target points ``a`` (aerial east/north, metres).
        weights: (B, N) float >= 0, per-correspondence weights (0 drops a point).
        eps: added to the total weight, the source variance and the cross-covariance norm so
            the solution and its gradients stay finite on degenerate input.
        with_scale: False fixes ``scale = 1`` (rigid fit, metric depth trusted).

    Returns:
        The fitted :class:`SimilarityBatch`.

    Raises:
        ValueError: on mismatched shapes.
    """
    if source.ndim != 3 or source.shape[-1] != 2 or source.shape != target.shape:
        raise ValueError(
            f"source and target must both be (B, N, 2), got {tuple(source.shape)} and "
            f"{tuple(target.shape)}"
        )
    if weights.shape != source.shape[:2]:
        raise ValueError(
            f"weights must be (B, N) = {tuple(source.shape[:2])}, got {tuple(weights.shape)}"
        )
    w = weights.clamp_min(0.0)
    w_sum = w.sum(dim=1, keepdim=True) + eps  # (B, 1)
    wn = w / w_sum  # normalised weights, (B, N)
    mu_g = torch.einsum("bn,bnd->bd", wn, source)
    mu_a = torch.einsum("bn,bnd->bd", wn, target)
    gc = source - mu_g[:, None, :]
    ac = target - mu_a[:, None, :]
    # Σ = sum_i w_i a'_i g'_i^T (normalised), only the rotation-invariant parts are needed.
    s11 = (wn * ac[..., 0] * gc[..., 0]).sum(dim=1)
    s22 = (wn * ac[..., 1] * gc[..., 1]).sum(dim=1)
    s12 = (wn * ac[..., 0] * gc[..., 1]).sum(dim=1)
    s21 = (wn * ac[..., 1] * gc[..., 0]).sum(dim=1)
    cos_part = s11 + s22
    sin_part = s21 - s12
    yaw = torch.atan2(sin_part, cos_part + eps * (cos_part == 0).to(cos_part.dtype))
    rotation = rotation_2d(yaw)
    if with_scale:
        var_g = (wn * (gc * gc).sum(dim=-1)).sum(dim=1)
        norm = torch.sqrt(cos_part * cos_part + sin_part * sin_part + eps * eps)
        scale = norm / (var_g + eps)
    else:
        scale = torch.ones_like(yaw)
    translation = mu_a - scale[:, None] * torch.einsum("bij,bj->bi", rotation, mu_g)
    return SimilarityBatch(scale=scale, yaw_rad=yaw, rotation=rotation, translation_m=translation)
