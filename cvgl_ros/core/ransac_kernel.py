"""Compiled RANSAC kernel: the algorithm of :mod:`cvgl_ros.core.ransac` as one numba function.

The vectorised numpy solver in :mod:`cvgl_ros.core.ransac` is the reference. Its cost at the
sizes the node sees (a few hundred to a few thousand matches) is not arithmetic but the fixed
overhead of about a hundred numpy calls per solve (~0.2 ms). This module runs the same steps,
in the same order, on the same seeded uniform draws, as scalar loops compiled by numba
(``nopython``, ``nogil``, cached on disk): sampling pools, minimal samples, priors, preemptive
scoring on the pool, the winner's full MSAC cost, the local optimisation and the adaptive stop.
Results agree with the numpy path to rounding (tested). The one exception is an exact tie in
cost between two hypotheses (tiny problems: five points, two pairs each fitted exactly), which
rounding breaks either way; both answers then have the same cost.

Importing this module imports numba; :func:`cvgl_ros.core.ransac.ransac_similarity` imports it
lazily and falls back to numpy when numba is missing (``RansacConfig.implementation``).
"""

from __future__ import annotations

import cmath
import math

import numba
import numpy as np

from cvgl_ros.core import ransac as _reference
from cvgl_ros.core.types import BoolArray, FloatArray, IntArray

# Status codes returned by :func:`solve`.
OK = 0
NO_HYPOTHESIS = 1
SOURCE_NOT_FINITE = 2
TARGET_NOT_FINITE = 3
WEIGHTS_NOT_FINITE = 4
WEIGHTS_NEGATIVE = 5
WEIGHTS_ALL_ZERO = 6

# Indices into the ``params`` vector of :func:`solve`.
P_TH2 = 0
P_CONFIDENCE = 1
P_MIN_D2 = 2
P_SCALE_MIN = 3
P_SCALE_MAX = 4
P_YAW_COS = 5
P_YAW_SIN = 6
P_YAW_TOL = 7
P_POS_E = 8
P_POS_N = 9
P_INFO_EE = 10
P_INFO_EN = 11
P_INFO_NN = 12
P_GATE2 = 13
NUM_PARAMS = 14

# Indices into the integer ``flags`` vector of :func:`solve`.
F_MAX_ITERATIONS = 0
F_BATCH = 1
F_LO_ITERATIONS = 2
F_WEIGHTED_REFIT = 3
F_HAS_SCALE = 4
F_HAS_YAW = 5
F_HAS_POSITION = 6
NUM_FLAGS = 7

_jit = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")


# The scalar helpers of the numpy path, compiled as they are: one definition each.
_needed_iterations = _jit(_reference._needed_iterations)
_similarity_from_moments = _jit(_reference.similarity_from_moments)


@_jit
def _kth_smallest(v: FloatArray, k: int) -> float:
    """Value of rank ``k`` (0-based, ascending) of ``v`` (N,), which it reorders.

    Quickselect with a median-of-three pivot and three-way partitioning (expected O(N), also
    when many values are equal); ``np.partition`` would do, but costs seconds to compile.
    """
    lo = 0
    hi = v.shape[0] - 1
    while lo < hi:
        x, y, z = v[lo], v[(lo + hi) // 2], v[hi]
        pivot: float = max(min(x, y), min(max(x, y), z))
        lt = lo
        i = lo
        gt = hi
        while i <= gt:
            e = v[i]
            if e < pivot:
                v[i] = v[lt]
                v[lt] = e
                lt += 1
                i += 1
            elif e > pivot:
                v[i] = v[gt]
                v[gt] = e
                gt -= 1
            else:
                i += 1
        if k < lt:
            hi = lt - 1
        elif k > gt:
            lo = gt + 1
        else:
            return pivot
    last: float = v[lo]
    return last


@_jit
def select_pool(w: FloatArray, pool: int, out: IntArray) -> int:
    """The ``pool`` highest weights (ties to the lower index), in index order, into ``out``.

    Args:
        w: (N,) float64 weights.
        pool: pool size, 1 <= pool <= N.
        out: (N,) intp, receives the pool's indices in its first ``pool`` entries.

    Returns:
        ``pool``.
    """
    n: int = w.shape[0]
    if pool >= n:
        for k in range(n):
            out[k] = k
        return n
    kth = _kth_smallest(w.copy(), n - pool)
    above = 0
    for k in range(n):
        if w[k] > kth:
            above += 1
    ties = pool - above
    m = 0
    for k in range(n):
        wk = w[k]
        if wk > kth or (wk == kth and ties > 0):
            if wk == kth:
                ties -= 1
            out[m] = k
            m += 1
    return m


@_jit
def _gather_pool(
    w: FloatArray,
    g: np.ndarray,
    a: np.ndarray,
    pool: int,
    idx: IntArray,
    gp: np.ndarray,
    ap: np.ndarray,
    wp: FloatArray,
) -> int:
    """Select the pool (:func:`select_pool`) and gather its points and weights contiguously."""
    m = select_pool(w, pool, idx)
    for p in range(m):
        k = idx[p]
        gp[p] = g[k]
        ap[p] = a[k]
        wp[p] = w[k]
    return m


@_jit
def _finite(z: complex) -> bool:
    return math.isfinite(z.real) and math.isfinite(z.imag)


@_jit
def _accepts(
    z: complex, t: complex, mg: complex, ma: complex, params: FloatArray, flags: IntArray
) -> bool:
    """Priors on a finite hypothesis of the centred problem (``HypothesisPriors.accepts``)."""
    tu = t + ma - z * mg
    if flags[F_HAS_SCALE]:
        s = abs(z)
        if s < params[P_SCALE_MIN] or s > params[P_SCALE_MAX]:
            return False
    if flags[F_HAS_YAW]:
        c = complex(params[P_YAW_COS], -params[P_YAW_SIN])
        if abs(cmath.phase(z * c)) > params[P_YAW_TOL]:
            return False
    if flags[F_HAS_POSITION]:
        de = tu.real - params[P_POS_E]
        dn = tu.imag - params[P_POS_N]
        d2 = (
            params[P_INFO_EE] * de * de
            + 2.0 * params[P_INFO_EN] * de * dn
            + params[P_INFO_NN] * dn * dn
        )
        if d2 > params[P_GATE2]:
            return False
    return True


@_jit
def _measure(
    g: np.ndarray,
    a: np.ndarray,
    w: FloatArray,
    weighted: bool,
    z: complex,
    t: complex,
    th2: float,
    out: FloatArray,
    previous: FloatArray,
) -> tuple[float, bool, tuple[float, float, float, float, float, float, float, float]]:
    """One pass over all correspondences for the hypothesis ``(z, t)``.

    Writes the squared residuals to ``out`` (N,) and returns the weighted MSAC cost, whether
    the inlier set differs from that of ``previous`` (N,) squared residuals, and the weighted
    moments of the new inliers ``Σ w [1, g_x, g_y, a_x, a_y, |g|², Re(ḡ a), Im(ḡ a)]`` that
    the least-squares refit needs (``similarity_from_moments``).
    """
    cost = 0.0
    changed = False
    sw = sgx = sgy = sax = say = sgg = sre = sim = 0.0
    for k in range(g.shape[0]):
        gk = g[k]
        ak = a[k]
        r = ak - z * gk - t
        r2 = r.real * r.real + r.imag * r.imag
        out[k] = r2
        inlier = r2 < th2
        cost += w[k] * min(r2, th2)
        changed |= inlier != (previous[k] < th2)
        if inlier:
            wk = w[k] if weighted else 1.0
            sw += wk
            sgx += wk * gk.real
            sgy += wk * gk.imag
            sax += wk * ak.real
            say += wk * ak.imag
            sgg += wk * (gk.real * gk.real + gk.imag * gk.imag)
            c = gk.conjugate() * ak
            sre += wk * c.real
            sim += wk * c.imag
    return cost, changed, (sw, sgx, sgy, sax, say, sgg, sre, sim)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _pool_cost(
    gp: np.ndarray, ap: np.ndarray, wp: FloatArray, pool: int, z: complex, t: complex, th2: float
) -> float:
    """Weighted MSAC cost of ``(z, t)`` on the first ``pool`` entries of the gathered pool.

    Reassociation lets the sum vectorise; it only changes rounding, and only the ranking of
    the hypotheses of one batch depends on it.
    """
    c = 0.0
    for p in range(pool):
        r = ap[p] - z * gp[p] - t
        c += wp[p] * min(r.real * r.real + r.imag * r.imag, th2)
    return c


@_jit
def solve(
    src: FloatArray,
    dst: FloatArray,
    weights: FloatArray,
    uniforms: FloatArray,
    params: FloatArray,
    flags: IntArray,
    initial_pool: int,
    use_weights: bool,
) -> tuple[int, complex, complex, float, int, int, int, FloatArray, BoolArray]:
    """Weighted-MSAC RANSAC for ``dst ≈ z src + t`` (complex form of the 2-D similarity).

    Args:
        src: (N, 2) float64, source points (any finite values; checked here).
        dst: (N, 2) float64, target points.
        weights: (N,) float64 match probabilities (ignored unless ``use_weights``).
        uniforms: (2, K) float64 in [0, 1), K >= max_iterations, the seeded draws.
        params: (NUM_PARAMS,) float64, see the ``P_*`` indices.
        flags: (NUM_FLAGS,) int64, see the ``F_*`` indices.
        initial_pool: size of the first sampling pool (the best-weighted correspondences).
        use_weights: order the sampling and weight the cost by ``weights``; False = all 1.

    Returns:
        (status, z, t, cost, iterations, rejected_by_priors, num_inliers, residuals_m,
        inlier_mask): ``t`` in the frame of ``dst`` (not centred), ``residuals_m`` (N,) float64
        residual norms of the returned model, ``inlier_mask`` (N,) bool; only ``iterations``
        and ``rejected_by_priors`` mean anything unless ``status == OK``.
    """
    n = src.shape[0]
    th2 = params[P_TH2]
    min_d2 = params[P_MIN_D2]
    max_it = flags[F_MAX_ITERATIONS]
    priors = flags[F_HAS_SCALE] or flags[F_HAS_YAW] or flags[F_HAS_POSITION]
    empty = np.empty(0)
    no_mask = np.empty(0, dtype=np.bool_)
    # Validate and centre in one pass each.
    sg = 0j
    sa = 0j
    for k in range(n):
        x = src[k, 0]
        y = src[k, 1]
        if not (math.isfinite(x) and math.isfinite(y)):
            return SOURCE_NOT_FINITE, 0j, 0j, 0.0, 0, 0, 0, empty, no_mask
        sg += complex(x, y)
        x = dst[k, 0]
        y = dst[k, 1]
        if not (math.isfinite(x) and math.isfinite(y)):
            return TARGET_NOT_FINITE, 0j, 0j, 0.0, 0, 0, 0, empty, no_mask
        sa += complex(x, y)
    w = np.empty(n)
    if use_weights:
        positive = False
        for k in range(n):
            wk = weights[k]
            if not math.isfinite(wk):
                return WEIGHTS_NOT_FINITE, 0j, 0j, 0.0, 0, 0, 0, empty, no_mask
            if wk < 0.0:
                return WEIGHTS_NEGATIVE, 0j, 0j, 0.0, 0, 0, 0, empty, no_mask
            positive |= wk > 0.0
            w[k] = wk
        if not positive:
            return WEIGHTS_ALL_ZERO, 0j, 0j, 0.0, 0, 0, 0, empty, no_mask
    else:
        w[:] = 1.0
    mg = sg / n
    ma = sa / n
    g = np.empty(n, dtype=np.complex128)
    a = np.empty(n, dtype=np.complex128)
    for k in range(n):
        g[k] = complex(src[k, 0], src[k, 1]) - mg
        a[k] = complex(dst[k, 0], dst[k, 1]) - ma

    pool_idx = np.empty(n, dtype=np.intp)
    gp = np.empty(n, dtype=np.complex128)
    ap = np.empty(n, dtype=np.complex128)
    wp = np.empty(n)
    pool = _gather_pool(w, g, a, min(n, initial_pool), pool_idx, gp, ap, wp)
    weighted = flags[F_WEIGHTED_REFIT] != 0
    best_r2 = np.empty(n)
    cand_r2 = np.empty(n)
    new_r2 = np.empty(n)
    best_z = 0j
    best_t = 0j
    best_cost = math.inf
    found = False
    iterations = 0
    rejected = 0
    needed = max_it
    batch_z = np.empty(flags[F_BATCH], dtype=np.complex128)
    batch_t = np.empty(flags[F_BATCH], dtype=np.complex128)
    while iterations < min(needed, max_it):
        b = min(flags[F_BATCH], max_it - iterations)
        m = 0
        for q in range(iterations, iterations + b):
            i = int(uniforms[0, q] * pool)
            j = int(uniforms[1, q] * (pool - 1))
            if j >= i:
                j += 1
            gi = gp[i]
            ai = ap[i]
            dg = gp[j] - gi
            if not dg.real * dg.real + dg.imag * dg.imag > min_d2:
                continue
            z = (ap[j] - ai) / dg
            t = ai - z * gi
            if not (_finite(z) and _finite(t)):
                continue
            if priors and not _accepts(z, t, mg, ma, params, flags):
                rejected += 1
                continue
            batch_z[m] = z
            batch_t[m] = t
            m += 1
        iterations += b
        if m > 0:
            # Preemptive scoring on the pool, then the winner on everything.
            k_best = 0
            c_best = math.inf
            for h in range(m):
                c = _pool_cost(gp, ap, wp, pool, batch_z[h], batch_t[h], th2)
                if c < c_best:
                    c_best = c
                    k_best = h
            zk = batch_z[k_best]
            tk = batch_t[k_best]
            # No previous inlier set to compare with: `previous` aliases `out`, `changed` unused.
            ck, _, mom = _measure(g, a, w, weighted, zk, tk, th2, cand_r2, cand_r2)
            if ck < best_cost:
                # Local optimisation: least-squares refit on the inliers while the cost falls.
                for _ in range(flags[F_LO_ITERATIONS]):
                    sw, sgx, sgy, sax, say, sgg, sre, sim = mom
                    ok, zf, tf = _similarity_from_moments(sw, sgx, sgy, sax, say, sgg, sre, sim)
                    if not ok or (priors and not _accepts(zf, tf, mg, ma, params, flags)):
                        break
                    cf, changed, mom_f = _measure(g, a, w, weighted, zf, tf, th2, new_r2, cand_r2)
                    if cf > ck:
                        break
                    zk, tk, ck, mom = zf, tf, cf, mom_f
                    cand_r2, new_r2 = new_r2, cand_r2
                    if not changed:
                        break
                best_z, best_t, best_cost = zk, tk, ck
                best_r2, cand_r2 = cand_r2, best_r2
                found = True
        if found:
            inside = 0
            for p in range(pool):
                if best_r2[pool_idx[p]] < th2:
                    inside += 1
            needed = _needed_iterations(inside / pool, params[P_CONFIDENCE], max_it)
        if pool < n and iterations < min(needed, max_it):
            pool = _gather_pool(w, g, a, min(n, 2 * pool), pool_idx, gp, ap, wp)
    if not found:
        return NO_HYPOTHESIS, 0j, 0j, 0.0, iterations, rejected, 0, empty, no_mask
    mask = np.empty(n, dtype=np.bool_)
    num = 0
    for k in range(n):
        inlier = best_r2[k] < th2
        mask[k] = inlier
        num += inlier
        best_r2[k] = math.sqrt(best_r2[k])
    t_out = best_t + ma - best_z * mg
    return OK, best_z, t_out, best_cost, iterations, rejected, num, best_r2, mask
