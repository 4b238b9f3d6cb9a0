"""Numpy side of the learned matcher: dual softmax, top-K selection, token -> pixel coordinates.

No torch here: these run after any backend (torch, ONNX Runtime, TensorRT) has produced the
descriptors or the probability matrix.
"""

from __future__ import annotations

import numpy as np

from cvgl_ros.core.types import FloatArray


def dual_softmax(
    desc_a: np.ndarray, desc_b: np.ndarray, temperature: float, dustbin_score: float
) -> np.ndarray:
    """Dual-softmax match probabilities with a dustbin (numpy twin of ``DualSoftmaxMatcher``).

    Args:
        desc_a: (N, D) float32, L2-normalised descriptors of image A.
        desc_b: (M, D) float32, L2-normalised descriptors of image B.
        temperature: similarity temperature (> 0).
        dustbin_score: dustbin logit.

    Returns:
        (N, M) float32 probabilities; rows and columns each sum to at most 1.
    """
    if desc_a.ndim != 2 or desc_b.ndim != 2 or desc_a.shape[1] != desc_b.shape[1]:
        raise ValueError(
            f"descriptors must be (N, D) and (M, D), got {desc_a.shape}, {desc_b.shape}"
        )
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n, m = desc_a.shape[0], desc_b.shape[0]
    aug = np.full((n + 1, m + 1), dustbin_score, dtype=np.float64)
    aug[:n, :m] = (desc_a.astype(np.float64) @ desc_b.astype(np.float64).T) / temperature
    row = np.exp(aug - aug.max(axis=1, keepdims=True))
    row /= row.sum(axis=1, keepdims=True)
    col = np.exp(aug - aug.max(axis=0, keepdims=True))
    col /= col.sum(axis=0, keepdims=True)
    probs: np.ndarray = (row * col)[:n, :m].astype(np.float32)
    return probs


def select_matches(
    probs: np.ndarray, top_k: int, mutual: bool = True, min_probability: float = 0.0
) -> tuple[np.ndarray, np.ndarray, FloatArray]:
    """Pick the top-K correspondences of a probability matrix.

    Args:
        probs: (N, M) float, match probabilities (dustbin removed).
        top_k: maximum number of matches returned.
        mutual: keep only entries that are the maximum of both their row and their column.
        min_probability: drop entries below this probability.

    Returns:
        ``(idx_a, idx_b, prob)``: (K,) int64 row indices, (K,) int64 column indices and (K,)
        float64 probabilities, sorted by decreasing probability, K <= top_k.
    """
    p = np.asarray(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, M), got {p.shape}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    if p.size == 0:
        return empty
    keep = p > min_probability
    if mutual:
        row_max = p.max(axis=1, keepdims=True)
        col_max = p.max(axis=0, keepdims=True)
        keep &= (p >= row_max) & (p >= col_max)
    rows, cols = np.nonzero(keep)
    if rows.size == 0:
        return empty
    vals = p[rows, cols].astype(np.float64)
    if vals.size > top_k:
        part = np.argpartition(-vals, top_k - 1)[:top_k]
        rows, cols, vals = rows[part], cols[part], vals[part]
    order = np.argsort(-vals, kind="stable")
    return rows[order].astype(np.int64), cols[order].astype(np.int64), vals[order]


def token_centers_px(
    grid_hw: tuple[int, int], input_hw_px: tuple[int, int], image_hw_px: tuple[int, int]
) -> FloatArray:
    """Pixel centres of the patch tokens, in the original image.

    Token (r, c) covers network-input pixels [14c, 14c + 14) x [14r, 14r + 14); its centre is
    mapped through the resize from the original image to the network input.

    Args:
        grid_hw: (h, w) token grid.
        input_hw_px: (height, width) of the network input.
        image_hw_px: (height, width) of the original image.

    Returns:
        (h * w, 2) float64, pixels (u right, v down) in the original image, row-major order
        (same order as the flattened token grid); pixel centres at integer coordinates.
    """
    gh, gw = grid_hw
    in_h, in_w = input_hw_px
    im_h, im_w = image_hw_px
    step_v, step_u = in_h / gh, in_w / gw
    u_in = (np.arange(gw) + 0.5) * step_u  # continuous coordinates (pixel edges at integers)
    v_in = (np.arange(gh) + 0.5) * step_v
    u = u_in * (im_w / in_w) - 0.5
    v = v_in * (im_h / in_h) - 0.5
    uu, vv = np.meshgrid(u, v)
    return np.stack([uu.ravel(), vv.ravel()], axis=1).astype(np.float64)
