"""RANSAC for the 2-D similarity: 2-point minimal samples, vectorised batches, weighted MSAC.

The solver is assembled from three parts (kornia-style): a minimal solver (two correspondences
fix ``z = s e^{i yaw}`` and ``t`` in complex form, a whole batch at once), a scorer (weighted
MSAC: ``Σ w_i min(r_i², τ²)`` with match probabilities ``w_i``; a batch is scored on the sampling
pool by one small matrix product, its winner on every correspondence) and a polisher (local
optimisation: least-squares refit on the inliers, iterated while the cost falls).

Speed comes from sampling, not brute force:

- **PROSAC-style ordered sampling.** Correspondences are sorted by weight; the first batch
  draws its minimal samples from the best-weighted ``initial_pool_fraction`` (at least
  ``min_pool_size``) and the pool doubles each batch until it covers everything.
- **Adaptive termination.** After each batch the inlier ratio ``ε`` of the best model inside the
  current pool gives the number of samples needed to draw an all-inlier pair with probability
  ``confidence``: ``log(1 - confidence) / log(1 - ε²)``; the loop stops when that many have been
  drawn (capped at ``max_iterations``).
- **Priors reject hypotheses before scoring**: scale bounds, a yaw prior with tolerance, a
  position prior (Mahalanobis gate on ``t``).

Everything is seeded (``RansacConfig.seed``): the same input gives the same output.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from cvgl_ros.core.camera import as_points
from cvgl_ros.core.config import RansacConfig
from cvgl_ros.core.errors import DegenerateInputError, InvalidInputError, NoValidHypothesisError
from cvgl_ros.core.procrustes import Similarity2D, check_weights
from cvgl_ros.core.types import BoolArray, FloatArray, IntArray

ComplexArray = np.ndarray
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HypothesisPriors:
    """Constraints a hypothesis must satisfy to be scored.

    Attributes:
        scale_min: smallest allowed scale, or None.
        scale_max: largest allowed scale, or None.
        yaw_rad: yaw prior (patch frame = ENU), radians, or None.
        yaw_tolerance_rad: allowed |yaw - yaw_rad|, radians.
        position_en_m: (2,) float64 prior position in the target frame, metres, or None.
        position_cov_m2: (2, 2) float64 covariance of ``position_en_m``, m².
        position_gate_n_sigma: allowed Mahalanobis distance from ``position_en_m``.
    """

    scale_min: float | None = None
    scale_max: float | None = None
    yaw_rad: float | None = None
    yaw_tolerance_rad: float = math.pi
    position_en_m: FloatArray | None = None
    position_cov_m2: FloatArray | None = None
    position_gate_n_sigma: float = 5.0
    _position_info: FloatArray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("scale_min", "scale_max", "yaw_rad"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise InvalidInputError(f"HypothesisPriors.{name} must be finite")
        if not (math.isfinite(self.yaw_tolerance_rad) and self.yaw_tolerance_rad > 0.0):
            raise InvalidInputError("HypothesisPriors.yaw_tolerance_rad must be > 0")
        if not (math.isfinite(self.position_gate_n_sigma) and self.position_gate_n_sigma > 0.0):
            raise InvalidInputError("HypothesisPriors.position_gate_n_sigma must be > 0")
        if (self.position_en_m is None) != (self.position_cov_m2 is None):
            raise InvalidInputError("position_en_m and position_cov_m2 go together")
        if self.position_en_m is not None and self.position_cov_m2 is not None:
            p = np.asarray(self.position_en_m, dtype=np.float64).reshape(-1)
            c = np.asarray(self.position_cov_m2, dtype=np.float64)
            if p.shape != (2,) or c.shape != (2, 2):
                raise InvalidInputError("position prior must be (2,) with a (2, 2) covariance")
            if not (np.all(np.isfinite(p)) and np.all(np.isfinite(c))):
                raise InvalidInputError("position prior contains NaN or inf")
            if np.linalg.eigvalsh(0.5 * (c + c.T)).min() <= 0.0:
                raise InvalidInputError("position_cov_m2 must be positive definite")
            sym = 0.5 * (c + c.T)
            object.__setattr__(self, "position_en_m", p)
            object.__setattr__(self, "position_cov_m2", sym)
            object.__setattr__(self, "_position_info", np.linalg.inv(sym))

    @property
    def position_info(self) -> FloatArray | None:
        """(2, 2) inverse of the position covariance, or None."""
        return self._position_info

    def accepts(self, z: ComplexArray, t: ComplexArray) -> BoolArray:
        """Vectorised check of hypotheses ``(z, t)``, each (B,) complex128 -> (B,) bool."""
        ok = np.isfinite(z) & np.isfinite(t)
        if self.scale_min is not None or self.scale_max is not None:
            s = np.abs(z)
            if self.scale_min is not None:
                ok &= s >= self.scale_min
            if self.scale_max is not None:
                ok &= s <= self.scale_max
        if self.yaw_rad is not None:
            c = complex(math.cos(self.yaw_rad), -math.sin(self.yaw_rad))
            ok &= np.abs(np.angle(z * c)) <= self.yaw_tolerance_rad
        info = self.position_info
        if info is not None and self.position_en_m is not None:
            de = t.real - self.position_en_m[0]
            dn = t.imag - self.position_en_m[1]
            d2 = info[0, 0] * de * de + 2.0 * info[0, 1] * de * dn + info[1, 1] * dn * dn
            ok &= d2 <= self.position_gate_n_sigma**2
        return np.asarray(ok, dtype=np.bool_)


@dataclass(frozen=True)
class RansacResult:
    """Outcome of :func:`ransac_similarity`.

    Attributes:
        model: the polished similarity ``target ≈ s R source + t``.
        inlier_mask: (N,) bool, residual below the threshold (input order).
        residuals_m: (N,) float64, metres, residual norm of every correspondence.
        num_inliers: number of inliers.
        inlier_ratio: inliers / N.
        iterations: hypotheses drawn.
        cost: weighted MSAC cost of the model.
    """

    model: Similarity2D
    inlier_mask: BoolArray
    residuals_m: FloatArray
    num_inliers: int
    inlier_ratio: float
    iterations: int
    cost: float


def similarity_from_moments(
    sw: float,
    sgx: float,
    sgy: float,
    sax: float,
    say: float,
    sgg: float,
    sre: float,
    sim: float,
) -> tuple[bool, complex, complex]:
    """Closed-form weighted least-squares similarity ``a ≈ z g + t`` from summed moments.

    Args:
        sw, sgx, sgy, sax, say, sgg, sre, sim: ``Σ w [1, g_x, g_y, a_x, a_y, |g|², Re(ḡ a),
            Im(ḡ a)]`` over the points to fit.

    Returns:
        (ok, z, t); ok is False (z, t meaningless) without weight, spread or a non-zero z.
        Plain scalar code: the numba kernel compiles this same function.
    """
    if sw <= 0.0:
        return False, 0j, 0j
    var_g = sgg - (sgx * sgx + sgy * sgy) / sw
    if not var_g > 1e-12 * max(sgg, 1e-300):
        return False, 0j, 0j
    cre = sre - (sgx * sax + sgy * say) / sw
    cim = sim - (sgx * say - sgy * sax) / sw
    z = complex(cre, cim) / var_g
    if z == 0:
        return False, 0j, 0j
    mg = complex(sgx, sgy) / sw
    ma = complex(sax, say) / sw
    return True, z, ma - z * mg


def _needed_iterations(inlier_ratio: float, confidence: float, cap: int) -> int:
    if inlier_ratio <= 0.0:
        return cap
    p_good = inlier_ratio * inlier_ratio
    if p_good >= 1.0:
        return 1
    return int(min(cap, math.ceil(math.log(1.0 - confidence) / math.log(1.0 - p_good))))


# Uniform variates for sampling come from seeded, cached blocks: creating a generator costs
# more than a whole small solve, and the draws stay reproducible for a given seed.
_BLOCK = 4096
_stream_cache: dict[tuple[int, int], FloatArray] = {}


def _uniform_stream(seed: int, count: int) -> FloatArray:
    """(2, K) float64 uniforms in [0, 1), K >= ``count``: the first draws of ``seed``'s stream.

    The stream is made of blocks of ``_BLOCK`` draws per row, block ``b`` from
    ``default_rng((seed, b))``. Cached: every solve with the same seed starts with the same draws.
    """
    blocks = max(1, -(-count // _BLOCK))
    key = (seed, blocks)
    u = _stream_cache.get(key)
    if u is None:
        if len(_stream_cache) >= 64:
            _stream_cache.clear()
        parts = [np.random.default_rng((seed, b)).random((2, _BLOCK)) for b in range(blocks)]
        u = np.ascontiguousarray(np.concatenate(parts, axis=1))
        u.flags.writeable = False
        _stream_cache[key] = u
    return u


def _sample_pairs(u: FloatArray, start: int, count: int, pool: int) -> tuple[IntArray, IntArray]:
    """``count`` ordered pairs of distinct indices in [0, pool) from draws ``start`` onwards."""
    i = (u[0, start : start + count] * pool).astype(np.intp)
    j = (u[1, start : start + count] * (pool - 1)).astype(np.intp)
    j += j >= i
    return i, j


def _pool_indices(w: FloatArray, pool: int) -> IntArray:
    """(pool,) indices of the ``pool`` highest weights (ties to the lower index), ascending."""
    n = w.shape[0]
    if pool >= n:
        return np.arange(n)
    kth = np.partition(w, n - pool)[n - pool]
    keep = w > kth
    ties = np.flatnonzero(w == kth)[: pool - int(np.count_nonzero(keep))]
    keep[ties] = True
    return np.flatnonzero(keep)


class _Problem:
    """Data of one solve, centred on the means of source and target.

    Squared residuals of hypotheses ``(z, t)`` are a linear function of nine per-point
    features (:meth:`pool_features`), so a batch is scored on the sampling pool by one small
    matrix product. Least-squares refits only need eight
    weighted moments ``w * [1, g_x, g_y, a_x, a_y, |g|², Re(ḡ a), Im(ḡ a)]`` summed over the
    inliers: one matrix-vector product with the inlier mask.
    """

    def __init__(
        self,
        src: FloatArray,
        dst: FloatArray,
        w_fit: FloatArray | None,
        w_score: FloatArray,
        th2: float,
    ) -> None:
        # (N, 2) C-contiguous float64 -> (N,) complex128 views (no copies), then centred.
        gz = np.ascontiguousarray(src).view(np.complex128).ravel()
        az = np.ascontiguousarray(dst).view(np.complex128).ravel()
        n = gz.shape[0]
        self.mg = complex(gz.sum()) / n
        self.ma = complex(az.sum()) / n
        self.g: np.ndarray = gz - self.mg
        self.a: np.ndarray = az - self.ma
        self.w_fit = w_fit
        self.w_score = w_score
        self.th2 = th2
        self._moments: FloatArray | None = None

    @staticmethod
    def pool_features(g: np.ndarray, a: np.ndarray) -> FloatArray:
        """(9, P) features ``F = [|a|², a_x, a_y, 1, Re(ā g), Im(ā g), |g|², g_x, g_y]``.

        Squared residuals of hypotheses ``(z, t)`` are ``coefficients(z, t) @ F``:
        ``|a - z g - t|² = |a|² - 2 Re(ā t) + |t|² + |z|² |g|² - 2 Re(z ā g) + 2 Re(t̄ z g)``.

        Args:
            g: (P,) complex128, centred source points of the pool.
            a: (P,) complex128, centred target points of the pool.
        """
        n = g.shape[0]
        f = np.empty((9, n))
        f[0] = a.real * a.real + a.imag * a.imag
        f[1:3] = a.view(np.float64).reshape(n, 2).T
        f[3] = 1.0
        f[4:6] = (a.conj() * g).view(np.float64).reshape(n, 2).T
        f[6] = g.real * g.real + g.imag * g.imag
        f[7:9] = g.view(np.float64).reshape(n, 2).T
        return f

    @staticmethod
    def coefficients(z: np.ndarray, t: np.ndarray) -> FloatArray:
        """(B, 9) coefficients of hypotheses ``(z, t)`` for :meth:`pool_features`."""
        b = z.shape[0]
        c = np.empty((b, 9))
        c[:, 0] = 1.0
        c[:, 1:3] = (-2.0 * t).view(np.float64).reshape(b, 2)
        c[:, 3] = t.real * t.real + t.imag * t.imag
        # -2 Re(z ā g) = -2 (z_r F4 - z_i F5); 2 Re(t̄ z g) = 2 Re(t̄ z) g_x - 2 Im(t̄ z) g_y.
        c[:, 4:6] = (-2.0 * z.conj()).view(np.float64).reshape(b, 2)
        c[:, 6] = z.real * z.real + z.imag * z.imag
        c[:, 7:9] = (2.0 * (t.conj() * z).conj()).view(np.float64).reshape(b, 2)
        return c

    @property
    def moments(self) -> FloatArray:
        """(8, N) moments ``w * [1, g_x, g_y, a_x, a_y, |g|², Re(ḡ a), Im(ḡ a)]`` (lazy)."""
        if self._moments is None:
            g, a = self.g, self.a
            n = g.shape[0]
            m = np.empty((8, n))
            m[0] = 1.0
            m[1:3] = g.view(np.float64).reshape(n, 2).T
            m[3:5] = a.view(np.float64).reshape(n, 2).T
            m[5] = g.real * g.real + g.imag * g.imag
            m[6:8] = (g.conj() * a).view(np.float64).reshape(n, 2).T
            if self.w_fit is not None:
                m *= self.w_fit
            self._moments = m
        return self._moments

    def residuals2(self, z: complex, t: complex) -> FloatArray:
        """(N,) float64 squared residuals of one hypothesis (centred frame)."""
        r = z * self.g
        r += t
        np.subtract(self.a, r, out=r)
        r *= r.conj()
        return np.asarray(r.real, dtype=np.float64)

    def cost(self, r2: FloatArray) -> float:
        """Weighted MSAC cost."""
        return float(np.minimum(r2, self.th2) @ self.w_score)

    def refit(self, inliers: BoolArray) -> tuple[complex, complex] | None:
        """Weighted least-squares similarity on the inliers (None when degenerate)."""
        sw, sgx, sgy, sax, say, sgg, sre, sim = (self.moments @ inliers).tolist()
        ok, z, t = similarity_from_moments(sw, sgx, sgy, sax, say, sgg, sre, sim)
        return (z, t) if ok else None

    def polish(
        self,
        z: complex,
        t: complex,
        r2: FloatArray,
        cost: float,
        iterations: int,
        priors: _CentredPriors,
    ) -> tuple[complex, complex, FloatArray, float]:
        """Iterated least-squares refit on the inliers while it lowers the cost."""
        best_cost = cost
        inl = r2 < self.th2
        for _ in range(iterations):
            fit = self.refit(inl)
            if fit is None or not priors.accepts_one(*fit):
                break
            r2_new = self.residuals2(*fit)
            c = self.cost(r2_new)
            if c > best_cost:
                break
            (z, t), r2, best_cost = fit, r2_new, c
            inl_new = r2 < self.th2
            if not (inl_new ^ inl).any():
                break
            inl = inl_new
        return z, t, r2, best_cost

    def uncentre(self, z: complex, t: complex) -> tuple[complex, complex]:
        """Model of the centred data -> model of the original data."""
        return z, t + self.ma - z * self.mg


class _CentredPriors:
    """:class:`HypothesisPriors` applied to hypotheses of the centred problem."""

    def __init__(self, priors: HypothesisPriors, mg: complex, ma: complex) -> None:
        self.priors = priors
        self.mg = mg
        self.ma = ma
        self.active = (
            priors.scale_min is not None
            or priors.scale_max is not None
            or priors.yaw_rad is not None
            or priors.position_en_m is not None
        )

    def accepts(self, z: np.ndarray, t: np.ndarray) -> BoolArray:
        if not self.active:
            return np.ones(z.shape[0], dtype=np.bool_)
        return self.priors.accepts(z, t + self.ma - z * self.mg)

    def accepts_one(self, z: complex, t: complex) -> bool:
        if not self.active:
            return True
        return bool(self.accepts(np.array([z]), np.array([t]))[0])


_DEFAULT_CONFIG = RansacConfig()
_NO_PRIORS = HypothesisPriors()
_NO_WEIGHTS = np.zeros(0)
_kernel_lock = threading.Lock()
_kernel_module: ModuleType | None = None
_kernel_error: str | None = None


def load_compiled_kernel() -> ModuleType | None:
    """Import and compile :mod:`cvgl_ros.core.ransac_kernel` once (thread-safe).

    The first call in a process compiles the kernel (5-7 s on a 2-core x86 machine the
    first time after an install) or loads it from numba's on-disk cache (about 0.3 s). The
    node's pipeline calls it in a background thread at start-up (:func:`warm_up_in_background`);
    solves with ``implementation="auto"`` run on numpy until it is ready.

    Returns:
        The kernel module, or None when numba is missing or the kernel failed to compile
        (the reason is logged once and kept in :func:`compiled_kernel_error`).
    """
    global _kernel_module, _kernel_error
    with _kernel_lock:
        if _kernel_module is None and _kernel_error is None:
            try:
                from cvgl_ros.core import ransac_kernel

                _run_kernel(
                    ransac_kernel,
                    np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
                    np.array([[1.0, 1.0], [1.0, 2.0], [0.0, 1.0]]),
                    None,
                    _DEFAULT_CONFIG,
                    _NO_PRIORS,
                )
            except ImportError as exc:
                _kernel_error = f"numba is not installed ({exc})"
                _log.info("RANSAC runs on numpy: %s", _kernel_error)
            except Exception as exc:  # numba typing/lowering errors: fall back, loudly
                _kernel_error = f"the numba kernel failed to compile: {exc!r}"
                _log.warning("RANSAC runs on numpy: %s", _kernel_error)
            else:
                _kernel_module = ransac_kernel
        return _kernel_module


def warm_up_in_background(config: RansacConfig | None = None) -> threading.Thread | None:
    """Start :func:`load_compiled_kernel` in a daemon thread (None when there is nothing to do:
    ``implementation="numpy"`` or the kernel is already loaded or known unavailable)."""
    impl = (config if config is not None else _DEFAULT_CONFIG).implementation
    if impl == "numpy" or _kernel_module is not None or _kernel_error is not None:
        return None
    thread = threading.Thread(target=load_compiled_kernel, name="ransac-kernel-jit", daemon=True)
    thread.start()
    return thread


def describe_implementation(config: RansacConfig | None = None) -> str:
    """What solves run on now, for diagnostics; never blocks or compiles.

    Returns:
        ``"numba"``, ``"numpy"``, ``"numpy (numba kernel compiling)"``, ``"numba (not loaded
        yet)"`` or ``"numpy (<why the kernel is unavailable>)"``.
    """
    impl = (config if config is not None else _DEFAULT_CONFIG).implementation
    if impl == "numpy":
        return "numpy"
    if _kernel_module is not None:
        return "numba"
    if _kernel_error is not None:
        return f"numpy ({_kernel_error})"
    if _kernel_lock.locked():
        return "numpy (numba kernel compiling)"
    return "numba (not loaded yet)"


def compiled_kernel_error() -> str | None:
    """Why the compiled kernel is unavailable (after :func:`load_compiled_kernel`), or None."""
    return _kernel_error


def resolve_implementation(config: RansacConfig | None = None) -> str:
    """``"numba"`` or ``"numpy"``: what :func:`ransac_similarity` runs for ``config``.

    Raises:
        ImportError: ``implementation="numba"`` and the kernel is unavailable.
    """
    impl = (config if config is not None else _DEFAULT_CONFIG).implementation
    if impl == "numpy":
        return "numpy"
    if load_compiled_kernel() is not None:
        return "numba"
    if impl == "numba":
        raise _numba_missing()
    return "numpy"


def _numba_missing() -> ImportError:
    return ImportError(
        f"RansacConfig.implementation='numba' but {_kernel_error}; install numba "
        "(pip install numba, or apt install python3-numba), or use 'auto' or 'numpy'"
    )


def ransac_similarity(
    source: FloatArray,
    target: FloatArray,
    weights: FloatArray | None = None,
    config: RansacConfig | None = None,
    priors: HypothesisPriors | None = None,
) -> RansacResult:
    """Robustly fit ``target ≈ s R(yaw) source + t``.

    Runs the compiled kernel or the numpy solver (``config.implementation``, see
    :func:`resolve_implementation`); both give the same result up to rounding.

    Args:
        source: (N, 2) float64, planar ground points (gravity-aligned body frame, depth units).
        target: (N, 2) float64, aerial points (east, north), metres, patch frame.
        weights: (N,) float64 in [0, inf), match probabilities; None = all equal.
        config: RANSAC settings (threshold, confidence, cap, seed, ...).
        priors: hypothesis constraints; None = unconstrained.

    Returns:
        The best model after local optimisation, its inliers and residuals.

    Raises:
        InvalidInputError: malformed, empty, NaN or inf input.
        DegenerateInputError: fewer than 2 correspondences, no spread.
        NoValidHypothesisError: no minimal sample gave a hypothesis satisfying the priors.
        ImportError: ``implementation="numba"`` without numba.
    """
    cfg = config if config is not None else _DEFAULT_CONFIG
    pri = priors if priors is not None else _NO_PRIORS
    if cfg.implementation != "numpy":
        kernel = _kernel_module
        # "auto" does not wait while another thread compiles the kernel (the node warms it up
        # in the background): that solve runs on numpy instead.
        if kernel is None and not (cfg.implementation == "auto" and _kernel_lock.locked()):
            kernel = load_compiled_kernel()
            if kernel is None and cfg.implementation == "numba":
                raise _numba_missing()
        if kernel is not None:
            return _run_kernel(kernel, source, target, weights, cfg, pri)
    return _ransac_numpy(source, target, weights, cfg, pri)


def _initial_pool(cfg: RansacConfig, n: int) -> int:
    return min(n, max(cfg.min_pool_size, math.ceil(cfg.initial_pool_fraction * n)))


def _run_kernel(
    kernel: ModuleType,
    source: object,
    target: object,
    weights: object | None,
    cfg: RansacConfig,
    priors: HypothesisPriors,
) -> RansacResult:
    """:func:`ransac_similarity` through the compiled kernel."""
    # Finiteness is the kernel's first pass; it needs C-contiguous float64.
    src = np.ascontiguousarray(as_points(source, 2, "source", check_finite=False))
    dst = np.ascontiguousarray(as_points(target, 2, "target", check_finite=False))
    n = src.shape[0]
    if dst.shape[0] != n:
        raise InvalidInputError(f"source has {n} points, target {dst.shape[0]}")
    use_w = cfg.use_weights and weights is not None
    w = _NO_WEIGHTS
    if use_w:
        w = np.ascontiguousarray(weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != n:
            raise InvalidInputError(f"weights has {w.shape[0]} values for {n} points")
    elif weights is not None:
        check_weights(weights, n)
    if n < 2:
        raise DegenerateInputError("RANSAC needs at least 2 correspondences")
    params, flags = _kernel_params(cfg, priors)
    pool = _initial_pool(cfg, n) if use_w else n
    u = _uniform_stream(cfg.seed, cfg.max_iterations)
    out = kernel.solve(src, dst, w, u, params, flags, pool, use_w)
    status, z, t, cost, iterations, rejected, num, residuals_m, inlier_mask = out
    if status != kernel.OK:
        raise _kernel_failure(kernel, status, iterations, rejected)
    return RansacResult(
        model=Similarity2D.from_complex(z, t),
        inlier_mask=inlier_mask,
        residuals_m=residuals_m,
        num_inliers=num,
        inlier_ratio=num / n,
        iterations=iterations,
        cost=cost,
    )


_params_cache: list[tuple[RansacConfig, HypothesisPriors, tuple[FloatArray, IntArray]]] = []


def _kernel_params(cfg: RansacConfig, priors: HypothesisPriors) -> tuple[FloatArray, IntArray]:
    """(params, flags) vectors of the kernel for ``cfg`` and ``priors`` (last 8 cached)."""
    for c, p, v in _params_cache:
        if c is cfg and p is priors:
            return v
    yaw = priors.yaw_rad
    info = priors.position_info
    pos = priors.position_en_m
    params = np.array(
        [
            cfg.inlier_threshold_m**2,
            cfg.confidence,
            cfg.min_sample_distance_m**2,
            -math.inf if priors.scale_min is None else priors.scale_min,
            math.inf if priors.scale_max is None else priors.scale_max,
            1.0 if yaw is None else math.cos(yaw),
            0.0 if yaw is None else math.sin(yaw),
            priors.yaw_tolerance_rad,
            0.0 if pos is None else pos[0],
            0.0 if pos is None else pos[1],
            0.0 if info is None else info[0, 0],
            0.0 if info is None else info[0, 1],
            0.0 if info is None else info[1, 1],
            priors.position_gate_n_sigma**2,
        ]
    )
    flags = np.array(
        [
            cfg.max_iterations,
            cfg.batch_size,
            cfg.lo_iterations,
            cfg.weighted_refit,
            priors.scale_min is not None or priors.scale_max is not None,
            yaw is not None,
            info is not None,
        ],
        dtype=np.int64,
    )
    params.flags.writeable = False
    flags.flags.writeable = False
    if len(_params_cache) >= 8:
        _params_cache.pop(0)
    _params_cache.append((cfg, priors, (params, flags)))
    return params, flags


def _no_hypothesis(iterations: int, rejected: int) -> NoValidHypothesisError:
    return NoValidHypothesisError(
        f"none of {iterations} minimal samples gave a hypothesis satisfying the priors "
        f"({rejected} rejected by the scale/yaw/position priors, the rest degenerate)",
        rejected_by_priors=rejected,
    )


def _kernel_failure(kernel: ModuleType, status: int, iterations: int, rejected: int) -> Exception:
    """The numpy path's exception for a failure status of the kernel."""
    if status == kernel.NO_HYPOTHESIS:
        return _no_hypothesis(iterations, rejected)
    if status == kernel.WEIGHTS_ALL_ZERO:
        return DegenerateInputError("all weights are zero")
    messages = {
        kernel.SOURCE_NOT_FINITE: "source contains NaN or inf",
        kernel.TARGET_NOT_FINITE: "target contains NaN or inf",
        kernel.WEIGHTS_NOT_FINITE: "weights contain NaN or inf",
        kernel.WEIGHTS_NEGATIVE: "weights must be >= 0",
    }
    return InvalidInputError(messages.get(status, f"RANSAC kernel status {status}"))


def _ransac_numpy(
    source: object,
    target: object,
    weights: object | None,
    cfg: RansacConfig,
    priors: HypothesisPriors,
) -> RansacResult:
    """:func:`ransac_similarity` in vectorised numpy (the reference implementation)."""
    src = as_points(source, 2, "source")
    dst = as_points(target, 2, "target")
    n = src.shape[0]
    if dst.shape[0] != n:
        raise InvalidInputError(f"source has {n} points, target {dst.shape[0]}")
    w_in = None if weights is None else check_weights(weights, n)
    if n < 2:
        raise DegenerateInputError("RANSAC needs at least 2 correspondences")
    if cfg.use_weights and w_in is not None:
        if not (w_in > 0.0).any():
            raise DegenerateInputError("all weights are zero")
        w_score = w_in
        pool = _initial_pool(cfg, n)
    else:
        w_score = np.ones(n)
        pool = n
    w_fit = w_score if cfg.weighted_refit else None
    prob = _Problem(src, dst, w_fit, w_score, cfg.inlier_threshold_m**2)
    pri = _CentredPriors(priors, prob.mg, prob.ma)
    th2 = prob.th2
    min_d2 = cfg.min_sample_distance_m**2
    g, a = prob.g, prob.a
    u = _uniform_stream(cfg.seed, cfg.max_iterations)

    # PROSAC-style pools: the `pool` best-weighted correspondences, doubling each batch.
    pool_idx = _pool_indices(w_score, pool)
    g_pool, a_pool = g[pool_idx], a[pool_idx]
    f_pool, w_pool = prob.pool_features(g_pool, a_pool), w_score[pool_idx]

    best_cost = math.inf
    best: tuple[complex, complex] | None = None
    best_r2 = np.empty(0)
    iterations = 0
    rejected = 0
    needed = cfg.max_iterations
    while iterations < min(needed, cfg.max_iterations):
        b = min(cfg.batch_size, cfg.max_iterations - iterations)
        i, j = _sample_pairs(u, iterations, b, pool)
        iterations += b
        gi, ai = g_pool[i], a_pool[i]
        dg = g_pool[j] - gi
        z = (a_pool[j] - ai) / np.where(dg == 0, 1.0, dg)
        t = ai - z * gi
        ok = (dg.real * dg.real + dg.imag * dg.imag > min_d2) & np.isfinite(z) & np.isfinite(t)
        if pri.active:
            well_posed = int(np.count_nonzero(ok))
            ok &= pri.accepts(z, t)
            rejected += well_posed - int(np.count_nonzero(ok))
        if ok.any():
            if not ok.all():
                z, t = z[ok], t[ok]
            # Score the batch on the pool only (preemptive), then the winner on everything.
            r2 = _Problem.coefficients(z, t) @ f_pool
            k = int(np.argmin(np.minimum(r2, th2, out=r2) @ w_pool))
            zk, tk = complex(z[k]), complex(t[k])
            r2k = prob.residuals2(zk, tk)
            ck = prob.cost(r2k)
            if ck < best_cost:
                zk, tk, r2k, ck = prob.polish(zk, tk, r2k, ck, cfg.lo_iterations, pri)
                best, best_r2, best_cost = (zk, tk), r2k, ck
        if best is not None:
            eps = float(np.count_nonzero(best_r2[pool_idx] < th2)) / pool
            needed = _needed_iterations(eps, cfg.confidence, cfg.max_iterations)
        if pool < n and iterations < min(needed, cfg.max_iterations):
            pool = min(n, 2 * pool)
            pool_idx = _pool_indices(w_score, pool)
            g_pool, a_pool = g[pool_idx], a[pool_idx]
            f_pool, w_pool = prob.pool_features(g_pool, a_pool), w_score[pool_idx]
    if best is None:
        raise _no_hypothesis(iterations, rejected)
    z_best, t_best = prob.uncentre(*best)
    inlier_mask = np.asarray(best_r2 < th2, dtype=np.bool_)
    num = int(np.count_nonzero(inlier_mask))
    return RansacResult(
        model=Similarity2D.from_complex(z_best, t_best),
        inlier_mask=inlier_mask,
        residuals_m=np.sqrt(np.maximum(best_r2, 0.0)),
        num_inliers=num,
        inlier_ratio=num / n,
        iterations=iterations,
        cost=best_cost,
    )
