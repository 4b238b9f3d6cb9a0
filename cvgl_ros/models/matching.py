"""Numpy side of the learned matcher: dual softmax, top-K selection, token -> pixel coordinates.

No torch here: these run after any backend (torch, ONNX Runtime, TensorRT) has produced the
descriptors or the probability matrix.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.core.types import FloatArray

# The similarity matrix is small (a few hundred x a few thousand): a single-threaded GEMM takes
# about a millisecond. A multi-threaded one leaves OpenBLAS's worker threads spinning after the
# call, and on a 2-core machine those spinning threads starve the next network run (measured:
# ONNX Runtime ViT-S 224 went from 90 ms to 155 ms when a threaded GEMM ran between frames).
_BLAS_SET_SYMBOLS: tuple[str, ...] = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_BLAS_GET_SYMBOLS: tuple[str, ...] = (
    "scipy_openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)
# Differences of logits below this keep exp() inside float32's normal range (e^-80 ~ 1.8e-35),
# so one exponential can serve both softmaxes.
_SHARED_EXP_MAX_RANGE = 80.0


@functools.lru_cache(maxsize=1)
def _openblas_controls() -> tuple[tuple[Any, Any], ...]:
    """(set_num_threads, get_num_threads) of every OpenBLAS loaded in this process (Linux).

    Found through ``/proc/self/maps`` as threadpoolctl does; empty when there is none (another
    BLAS, another OS), in which case :func:`single_threaded_blas` does nothing.
    """
    import ctypes

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return ()
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()})
    controls = []
    for lib_path in paths:
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError:
            continue
        set_fn = next((getattr(lib, s) for s in _BLAS_SET_SYMBOLS if hasattr(lib, s)), None)
        get_fn = next((getattr(lib, s) for s in _BLAS_GET_SYMBOLS if hasattr(lib, s)), None)
        if set_fn is not None and get_fn is not None:
            get_fn.restype = ctypes.c_int
            controls.append((set_fn, get_fn))
    return tuple(controls)


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run numpy's BLAS calls inside the block on one thread (restored afterwards)."""
    controls = _openblas_controls()
    previous = [int(get_fn()) for _, get_fn in controls]
    for set_fn, _ in controls:
        set_fn(1)
    try:
        yield
    finally:
        for (set_fn, _), n in zip(controls, previous, strict=True):
            set_fn(max(n, 1))


def dual_softmax(
    desc_a: np.ndarray, desc_b: np.ndarray, temperature: float, dustbin_score: float
) -> np.ndarray:
    """Dual-softmax match probabilities with a dustbin (numpy twin of ``DualSoftmaxMatcher``).

    Everything runs in float32; the similarity GEMM runs on one BLAS thread (see
    :func:`single_threaded_blas`). When the logits span less than 80 (temperature above ~1/40
    for unit descriptors) one exponential serves both the row and the column softmax.

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
    a = np.asarray(desc_a, dtype=np.float32)
    b = np.asarray(desc_b, dtype=np.float32)
    aug = np.empty((n + 1, m + 1), dtype=np.float32)
    with single_threaded_blas():
        np.matmul(a, b.T, out=aug[:n, :m])
    aug[:n, :m] *= np.float32(1.0 / temperature)
    aug[n, :] = dustbin_score
    aug[:n, m] = dustbin_score
    top, bottom = float(aug.max()), float(aug.min())
    if top - bottom < _SHARED_EXP_MAX_RANGE:
        exp = aug
        exp -= np.float32(top)
        np.exp(exp, out=exp)
        inv_row = np.float32(1.0) / exp.sum(axis=1)[:n, None]
        inv_col = np.float32(1.0) / exp.sum(axis=0)[None, :m]
        core = exp[:n, :m]
        probs: np.ndarray = core * inv_row
        probs *= core
        probs *= inv_col
        return probs
    row = np.exp(aug - aug.max(axis=1, keepdims=True))
    row /= row.sum(axis=1, keepdims=True)
    col = np.exp(aug - aug.max(axis=0, keepdims=True))
    col /= col.sum(axis=0, keepdims=True)
    out: np.ndarray = row[:n, :m] * col[:n, :m]
    return out


def select_matches(
    probs: np.ndarray, top_k: int, mutual: bool = True, min_probability: float = 0.0
) -> tuple[np.ndarray, np.ndarray, FloatArray]:
    """Pick the top-K correspondences of a probability matrix.

    The mutual filter uses one row argmax and one column argmax (O(N M), no boolean (N, M)
    matrices); top-K uses ``np.argpartition`` (linear) and sorts only the K kept.

    Args:
        probs: (N, M) float, match probabilities (dustbin removed).
        top_k: maximum number of matches returned.
        mutual: keep only entries that are the maximum of both their row and their column
            (on ties, the first row / column wins).
        min_probability: drop entries at or below this probability.

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
    if mutual:
        best_col = p.argmax(axis=1)
        best_row = p.argmax(axis=0)
        rows = np.flatnonzero(best_row[best_col] == np.arange(p.shape[0]))
        cols = best_col[rows]
        vals = p[rows, cols]
        keep = vals > min_probability
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    else:
        flat = p.reshape(-1)
        idx = np.flatnonzero(flat > min_probability)
        vals = flat[idx]
        rows, cols = np.divmod(idx, p.shape[1])
    if rows.size == 0:
        return empty
    if vals.size > top_k:
        part = np.argpartition(-vals, top_k - 1)[:top_k]
        rows, cols, vals = rows[part], cols[part], vals[part]
    order = np.argsort(-vals, kind="stable")
    return (
        rows[order].astype(np.int64),
        cols[order].astype(np.int64),
        vals[order].astype(np.float64),
    )


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
