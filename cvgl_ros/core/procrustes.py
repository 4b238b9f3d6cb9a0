"""Weighted scale-aware 2-D Procrustes (Umeyama 1991) in closed form.

Solves ``a_i ≈ s R(yaw) g_i + t`` in the weighted least-squares sense. In 2-D a rotation +
scale is multiplication by the complex number ``z = s e^{i yaw}``, and the weighted Umeyama
solution is ``z = Σ w_i conj(g̃_i) ã_i / Σ w_i |g̃_i|²`` on centred points ``g̃, ã``. This equals
Umeyama's SVD solution with its reflection guard (``S = diag(1, det(U V^T))``): a complex
multiplier is always a proper rotation, so a reflection can never be returned. Collinear point
sets are *not* degenerate for a similarity (two distinct points fix all 4 degrees of freedom);
the failure cases are fewer than two distinct weighted points or a zero-scale solution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvgl_ros.core.camera import as_points
from cvgl_ros.core.errors import DegenerateInputError, InvalidInputError
from cvgl_ros.core.types import FloatArray

# Relative size below which a point spread counts as zero.
_SPREAD_EPS = 1e-12


@dataclass(frozen=True, eq=False)
class Similarity2D:
    """A 2-D similarity ``target = scale * R(yaw) @ source + translation``.

    Attributes:
        scale: s > 0 (dimensionless when source and target share units).
        yaw_rad: rotation angle, radians in (-pi, pi] (``atan2(R[1,0], R[0,0])``).
        translation_m: (2,) float64, metres in the target frame.
    """

    scale: float
    yaw_rad: float
    translation_m: FloatArray

    @property
    def rotation(self) -> FloatArray:
        """(2, 2) float64 rotation matrix R(yaw)."""
        c, s = math.cos(self.yaw_rad), math.sin(self.yaw_rad)
        return np.array([[c, -s], [s, c]])

    @property
    def matrix(self) -> FloatArray:
        """(3, 3) float64 homogeneous ``target_from_source`` matrix."""
        m = np.eye(3)
        m[:2, :2] = self.scale * self.rotation
        m[:2, 2] = self.translation_m
        return m

    def apply(self, points: FloatArray) -> FloatArray:
        """(N, 2) source points -> (N, 2) float64 target points."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return np.asarray(p @ (self.scale * self.rotation).T + self.translation_m, np.float64)

    @classmethod
    def from_complex(cls, z: complex, t: complex) -> Similarity2D:
        """From the complex multiplier ``z = s e^{i yaw}`` and translation ``t = t_e + i t_n``."""
        return cls(
            scale=float(abs(z)),
            yaw_rad=float(math.atan2(z.imag, z.real)),
            translation_m=np.array([t.real, t.imag], dtype=np.float64),
        )


def check_weights(weights: object, n: int) -> FloatArray:
    """Validate (N,) finite non-negative weights.

    Raises:
        InvalidInputError: wrong length, NaN, inf or negative.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != n:
        raise InvalidInputError(f"weights has {w.shape[0]} values for {n} points")
    if not np.isfinite(w).all():
        raise InvalidInputError("weights contain NaN or inf")
    if (w < 0.0).any():
        raise InvalidInputError("weights must be >= 0")
    return w


def fit_similarity_complex(
    g: np.ndarray, a: np.ndarray, w: FloatArray | None
) -> tuple[complex, complex]:
    """Closed-form weighted fit on complex points (no validation; see :func:`fit_similarity`).

    Args:
        g: (N,) complex128, source points x + i y.
        a: (N,) complex128, target points e + i n.
        w: (N,) float64 weights, or None for equal weights.

    Returns:
        (z, t): complex multiplier s e^{i yaw} and translation.

    Raises:
        DegenerateInputError: zero total weight, source points without spread, zero scale.
    """
    if w is None:
        wsum = float(g.shape[0])
        mg = complex(g.mean()) if g.shape[0] else 0j
        ma = complex(a.mean()) if a.shape[0] else 0j
        gc = g - mg
        ac = a - ma
        var_g = float(np.vdot(gc, gc).real)
        cross = complex(np.vdot(gc, ac))
        var_a = float(np.vdot(ac, ac).real)
        scale_g = float(np.vdot(g, g).real) / max(wsum, 1.0)
    else:
        wsum = float(w.sum())
        if not wsum > 0.0:
            raise DegenerateInputError("total weight is zero")
        mg = complex(np.dot(w, g)) / wsum
        ma = complex(np.dot(w, a)) / wsum
        gc = g - mg
        ac = a - ma
        wgc = w * gc
        var_g = float(np.vdot(wgc, gc).real)
        cross = complex(np.vdot(wgc, ac))
        var_a = float(np.vdot(w * ac, ac).real)
        scale_g = float(np.dot(w, (g * g.conj()).real)) / wsum
    if wsum <= 0.0 or var_g <= _SPREAD_EPS * wsum * max(scale_g, 1e-300):
        raise DegenerateInputError("source points have no spread (fewer than 2 distinct points)")
    z = cross / var_g
    if abs(z) <= 1e-12 * math.sqrt(max(var_a, 1e-300) / var_g) or var_a <= 0.0:
        raise DegenerateInputError("target points have no spread (zero scale)")
    return z, ma - z * mg


def fit_similarity(
    source: FloatArray, target: FloatArray, weights: FloatArray | None = None
) -> Similarity2D:
    """Weighted least-squares similarity ``target ≈ s R source + t`` (2-D Umeyama).

    Args:
        source: (N, 2) float64, source points (e.g. planar ground points, gravity-aligned body
            frame, depth units).
        target: (N, 2) float64, target points (e.g. aerial (east, north), metres).
        weights: (N,) float64 >= 0, or None for equal weights.

    Returns:
        The similarity; scale > 0 and a proper rotation (never a reflection, never NaN).

    Raises:
        InvalidInputError: malformed, empty, NaN or inf input, mismatched lengths.
        DegenerateInputError: fewer than two points with weight, coincident source or target
            points.
    """
    g2 = as_points(source, 2, "source")
    a2 = as_points(target, 2, "target")
    if g2.shape[0] != a2.shape[0]:
        raise InvalidInputError(f"source has {g2.shape[0]} points, target {a2.shape[0]}")
    w = None if weights is None else check_weights(weights, g2.shape[0])
    if g2.shape[0] < 2 or (w is not None and np.count_nonzero(w) < 2):
        raise DegenerateInputError("a similarity needs at least 2 weighted points")
    g = g2[:, 0] + 1j * g2[:, 1]
    a = a2[:, 0] + 1j * a2[:, 1]
    z, t = fit_similarity_complex(g, a, w)
    return Similarity2D.from_complex(z, t)
