"""Differentiable sampling of correspondences from a dual-softmax probability matrix.

The indices of the sampled pairs are discrete; the gradient reaches the matcher through the
weights, which are the probabilities of the sampled cells (as in Loc2). Two strategies:

- ``topk``: the K most probable (ground cell, aerial cell) pairs, deterministic (validation,
  and training once the matcher is peaked);
- ``multinomial``: K pairs drawn without replacement with probability proportional to the
  matrix (Gumbel top-K), which keeps exploring pairs a still-flat matcher would never pick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

SamplingMode = Literal["topk", "multinomial"]


@dataclass(frozen=True)
class SampledCorrespondences:
    """K sampled pairs per batch element.

    Attributes:
        ground_index: (B, K) int64, flat index of the ground feature cell (row-major).
        aerial_index: (B, K) int64, flat index of the aerial feature cell (row-major).
        weights: (B, K) float, the probability of each pair (differentiable), 0 for pairs
            that fell on a masked cell.
    """

    ground_index: torch.Tensor
    aerial_index: torch.Tensor
    weights: torch.Tensor


def sample_correspondences(
    probabilities: torch.Tensor,
    num_samples: int,
    mode: SamplingMode = "topk",
    ground_valid: torch.Tensor | None = None,
    aerial_valid: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> SampledCorrespondences:
    """Sample K correspondences per batch element from a (B, Ng, Na) probability matrix.

    Args:
        probabilities: (B, Ng, Na) float, dual-softmax probabilities with the dustbin removed.
        num_samples: K, pairs per batch element (clipped to Ng * Na).
        mode: ``"topk"`` or ``"multinomial"`` (see the module docstring).
        ground_valid: optional (B, Ng) bool; ground cells without a usable lifted point (no
            depth, sky, beyond the max depth) are never sampled.
        aerial_valid: optional (B, Na) bool; aerial cells without imagery are never sampled.
        generator: torch random generator for ``"multinomial"`` (reproducible sampling).

    Returns:
        The sampled pairs with their probabilities as weights.

    Raises:
        ValueError: on a malformed matrix, K < 1 or an unknown mode.
    """
    if probabilities.ndim != 3:
        raise ValueError(f"probabilities must be (B, Ng, Na), got {tuple(probabilities.shape)}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    b, ng, na = probabilities.shape
    k = min(int(num_samples), ng * na)
    probs = probabilities
    if ground_valid is not None:
        if ground_valid.shape != (b, ng):
            raise ValueError(
                f"ground_valid must be (B, Ng) = {(b, ng)}, got {tuple(ground_valid.shape)}"
            )
        probs = probs * ground_valid[:, :, None].to(probs.dtype)
    if aerial_valid is not None:
        if aerial_valid.shape != (b, na):
            raise ValueError(
                f"aerial_valid must be (B, Na) = {(b, na)}, got {tuple(aerial_valid.shape)}"
            )
        probs = probs * aerial_valid[:, None, :].to(probs.dtype)
    flat = probs.reshape(b, ng * na)
    with torch.no_grad():
        if mode == "topk":
            keys = flat.detach()
        elif mode == "multinomial":
            # Gumbel top-K = K draws without replacement with p proportional to flat.
            u = torch.rand(flat.shape, generator=generator, dtype=torch.float32)
            u = u.to(flat.device).clamp_(1e-12, 1.0 - 1e-7)
            gumbel = -torch.log(-torch.log(u))
            keys = torch.log(flat.detach().float().clamp_min(1e-30)) + gumbel
            keys = torch.where(flat.detach() > 0, keys, torch.full_like(keys, -torch.inf))
        else:
            raise ValueError(f"mode must be 'topk' or 'multinomial', got {mode!r}")
        index = torch.topk(keys, k, dim=1).indices
    weights = torch.gather(flat, 1, index)
    return SampledCorrespondences(
        ground_index=torch.div(index, na, rounding_mode="floor"),
        aerial_index=index % na,
        weights=weights,
    )


def gather_points(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick rows of a per-cell point table.

    Args:
        points: (B, N, 2) per-cell points.
        index: (B, K) int64 cell indices.

    Returns:
        (B, K, 2) the indexed points.
    """
    return torch.gather(points, 1, index[..., None].expand(-1, -1, points.shape[-1]))
