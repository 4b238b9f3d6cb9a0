"""Classical feature matcher (OpenCV SIFT / AKAZE / ORB) for nadir and oblique drone cameras.

The out-of-the-box matcher when no learned weights are installed. Keypoints are detected on
both images (the aerial patch only where ``valid_mask`` is True), matched with Lowe's ratio
test and a mutual nearest-neighbour check. All three detectors assign a dominant orientation
to every keypoint, so matching is invariant to the unknown yaw between the camera and the
north-up patch; scale invariance comes from their scale pyramids.

Each correspondence gets a weight in [0, 1] from its ratio-test score: ``1 - d1 / d2`` where
``d1`` and ``d2`` are the distances to the best and second-best neighbour, so a unique match
weighs close to 1 and an ambiguous one close to ``1 - ratio``.

Speed (the goal is >= 10 Hz at 640x480 on a 2-core CPU): SIFT descriptors are matched exactly
by one BLAS matrix product per block of ground descriptors (squared L2 distances), from which
the two nearest aerial neighbours of every ground descriptor and the nearest ground neighbour
of every aerial descriptor (the mutual check) are read off, instead of two OpenCV brute-force
passes; binary descriptors use OpenCV's Hamming brute force with the reverse pass restricted
to the aerial descriptors that passed the ratio test. The ground image is detected at most at
``ground_max_side_px`` and each image keeps its own keypoint budget
(``max_ground_features`` / ``max_aerial_features``), and the aerial features are cached per
patch, so a patch the localizer reuses is described once.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from cvgl_ros.core.types import AerialPatch, Correspondences, FloatArray, UInt8Array
from cvgl_ros.core.view import MatchView, apply_affine, invert_affine, view_from_image
from cvgl_ros.models.config import ClassicalMatcherConfig

LOGGER = logging.getLogger(__name__)

# Whether this OpenCV's SIFT takes ``enable_precise_upscale`` (added in 4.8); None = not yet
# tried. Detected once, on the first SIFT detector built.
_SIFT_PRECISE_UPSCALE: bool | None = None


def create_sift(max_features: int) -> cv2.Feature2D:
    """``cv2.SIFT_create`` with precise upscaling where this OpenCV has it (>= 4.8).

    The default 2x upscale of the first octave shifts keypoints by about a quarter pixel (0.12 m
    on a 0.5 m/px patch); ``enable_precise_upscale`` removes the shift. OpenCV 4.5-4.7 (the
    ``python3-opencv`` of ROS 2 Humble, Jazzy and Debian bookworm) reject the keyword: there
    SIFT runs without it, keeping the shift, and a warning says so once.
    """
    global _SIFT_PRECISE_UPSCALE
    if _SIFT_PRECISE_UPSCALE is not False:
        try:
            sift = cv2.SIFT_create(  # type: ignore[attr-defined]
                nfeatures=max_features, enable_precise_upscale=True
            )
        except (TypeError, cv2.error):  # OpenCV < 4.8: unknown keyword
            _SIFT_PRECISE_UPSCALE = False
            LOGGER.warning(
                "OpenCV %s has no SIFT precise upscaling (>= 4.8): SIFT keypoints keep a "
                "quarter-pixel offset",
                cv2.__version__,
            )
        else:
            _SIFT_PRECISE_UPSCALE = True
            return sift  # type: ignore[no-any-return]
    return cv2.SIFT_create(nfeatures=max_features)  # type: ignore[attr-defined,no-any-return]


@dataclass(frozen=True)
class _Features:
    """Keypoints and descriptors of one image, coordinates in the original image's pixels.

    Attributes:
        points_px: (N, 2) float64, pixels (u right, v down), pixel centres at integers.
        descriptors: (N, D) float32 (SIFT) or uint8 (binary); None when N == 0.
    """

    points_px: FloatArray
    descriptors: np.ndarray | None


def _to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB or (H, W) / (H, W, 1) mono uint8 -> (H, W) uint8."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_RGB2GRAY if image.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    raise ValueError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}")


def _upright_keypoints(
    keypoints: Sequence[cv2.KeyPoint], angle_deg: float = 0.0
) -> list[cv2.KeyPoint]:
    """Keypoints at one fixed orientation ``angle_deg``, one per location and size.

    Detectors that assign orientations emit one keypoint per dominant orientation at the same
    place; at a fixed orientation those would become identical descriptors that defeat the
    ratio test, so only the strongest of each (position, size) is kept.
    """
    best: dict[tuple[float, float, float], cv2.KeyPoint] = {}
    for kp in keypoints:
        key = (round(kp.pt[0], 2), round(kp.pt[1], 2), round(kp.size, 2))
        kept = best.get(key)
        if kept is None or kp.response > kept.response:
            best[key] = kp
    out = []
    for kp in best.values():
        up = cv2.KeyPoint(
            kp.pt[0], kp.pt[1], kp.size, angle_deg, kp.response, kp.octave, kp.class_id
        )
        out.append(up)
    return out


def patch_key(patch: AerialPatch) -> tuple[object, ...]:
    """A key identifying a patch by georeference and image content (for feature caches).

    Two patches share a key only when their source, centre, resolution, size and pixels
    (BLAKE2b digest of image and mask) are identical.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(patch.image).data)
    digest.update(np.packbits(patch.valid_mask).data)
    return (
        patch.source_id,
        float(patch.center_lat_deg),
        float(patch.center_lon_deg),
        float(patch.m_per_px),
        patch.image.shape,
        digest.hexdigest(),
    )


# Squared-distance matrix elements computed at once (float32): bounds the matcher's memory
# (16 MiB) whatever the keypoint counts.
_DISTANCE_BLOCK_ELEMENTS = 1 << 22


def nearest_neighbours_l2(
    query: np.ndarray, train: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact L2 nearest neighbours between two float descriptor sets, with the mutual check.

    Squared distances ``|q|² + |t|² - 2 q·t`` come from one float32 matrix product (BLAS) per
    block of query rows, the norms folded into the product (``[q, |q|², 1] · [-2t, 1, |t|²]``),
    so the cost is that of one GEMM rather than of a scalar loop. The reverse direction needs
    no second search: query ``i`` is the nearest query of its best train descriptor ``j``
    exactly when its distance equals the minimum of column ``j``.

    Args:
        query: (N, D) float descriptors (N >= 1).
        train: (M, D) float descriptors (M >= 2).

    Returns:
        ``(best, d1, d2, mutual)``: (N,) int64 index of each query's nearest train descriptor;
        (N,) float64 distances to the nearest and second-nearest train descriptors; (N,) bool,
        True where the query is also the nearest query of its nearest train descriptor.

    Raises:
        ValueError: shapes that do not match, or fewer than 1 query / 2 train descriptors.
    """
    q = np.asarray(query, dtype=np.float32)
    t = np.asarray(train, dtype=np.float32)
    if q.ndim != 2 or t.ndim != 2 or q.shape[1] != t.shape[1]:
        raise ValueError(f"descriptor shapes do not match: {q.shape} vs {t.shape}")
    n, m = q.shape[0], t.shape[0]
    if n < 1 or m < 2:
        raise ValueError(f"need >= 1 query and >= 2 train descriptors, got {n} and {m}")
    dim = q.shape[1]
    q_aug = np.empty((n, dim + 2), dtype=np.float32)
    q_aug[:, :dim] = q
    q_aug[:, dim] = np.einsum("ij,ij->i", q, q)
    q_aug[:, dim + 1] = 1.0
    t_aug = np.empty((m, dim + 2), dtype=np.float32)
    np.multiply(t, np.float32(-2.0), out=t_aug[:, :dim])
    t_aug[:, dim] = 1.0
    t_aug[:, dim + 1] = np.einsum("ij,ij->i", t, t)
    best = np.empty(n, dtype=np.int64)
    d1_sq = np.empty(n, dtype=np.float32)
    d2_sq = np.empty(n, dtype=np.float32)
    col_min_sq = np.full(m, np.inf, dtype=np.float32)
    step = max(1, _DISTANCE_BLOCK_ELEMENTS // m)
    for start in range(0, n, step):
        stop = min(n, start + step)
        dist_sq = q_aug[start:stop] @ t_aug.T
        np.minimum(col_min_sq, dist_sq.min(axis=0), out=col_min_sq)
        rows = np.arange(stop - start)
        i1 = np.argmin(dist_sq, axis=1)
        best[start:stop] = i1
        d1_sq[start:stop] = dist_sq[rows, i1]
        dist_sq[rows, i1] = np.inf
        d2_sq[start:stop] = dist_sq.min(axis=1)
    mutual = d1_sq <= col_min_sq[best]
    d1 = np.sqrt(np.maximum(d1_sq.astype(np.float64), 0.0))
    d2 = np.sqrt(np.maximum(d2_sq.astype(np.float64), 0.0))
    return best, d1, d2, mutual


class ClassicalMatcher:
    """OpenCV keypoint matcher implementing :class:`cvgl_ros.core.interfaces.Matcher`.

    Not thread-safe (OpenCV detectors and the feature cache are shared state); use one
    instance per worker thread.

    Attributes:
        cache_hits: aerial patches whose features came from the cache.
        cache_misses: aerial patches that were described.
    """

    def __init__(self, config: ClassicalMatcherConfig | None = None) -> None:
        self.config = config or ClassicalMatcherConfig()
        cfg = self.config
        self._ground_detector = self._make_detector(cfg.ground_features)
        self._aerial_detector = (
            self._ground_detector
            if cfg.aerial_features == cfg.ground_features
            else self._make_detector(cfg.aerial_features)
        )
        self._float_descriptors = cfg.feature == "sift"
        self._matcher = cv2.BFMatcher(
            cv2.NORM_L2 if self._float_descriptors else cv2.NORM_HAMMING, crossCheck=False
        )
        self._clahe = (
            cv2.createCLAHE(
                clipLimit=cfg.clahe_clip_limit,
                tileGridSize=(cfg.clahe_tile_grid, cfg.clahe_tile_grid),
            )
            if cfg.clahe
            else None
        )
        self._cache: OrderedDict[tuple[object, ...], _Features] = OrderedDict()
        # The last patch object seen and its key: a patch the localizer reuses is not hashed
        # again (AerialPatch is immutable by contract).
        self._last_patch: AerialPatch | None = None
        self._last_key: tuple[object, ...] = ()
        self.cache_hits = 0
        self.cache_misses = 0

    def _make_detector(self, max_features: int) -> cv2.Feature2D:
        feature = self.config.feature
        if feature == "sift":
            return create_sift(max_features)
        if feature == "akaze":
            return cv2.AKAZE_create()  # type: ignore[attr-defined,no-any-return]
        return cv2.ORB_create(nfeatures=max_features)  # type: ignore[attr-defined,no-any-return]

    def _preprocess(self, image: np.ndarray, scale: float) -> np.ndarray:
        """Grayscale, resized (area interpolation) to ``round(W * scale) x round(H * scale)``
        (the sizes :func:`~cvgl_ros.core.view.view_from_image` uses), and CLAHE."""
        gray = _to_gray(image)
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        if size != (gray.shape[1], gray.shape[0]):
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        if self._clahe is not None:
            gray = self._clahe.apply(gray)
        return gray

    def describe(
        self,
        image: np.ndarray,
        valid_mask: np.ndarray | None = None,
        *,
        aerial: bool = True,
        upright: bool = False,
    ) -> _Features:
        """Detect and describe keypoints.

        Args:
            image: (H, W, 3) uint8 RGB or (H, W) uint8 mono.
            valid_mask: (H, W) bool, True where detection is allowed; None = everywhere.
            aerial: True for an aerial patch (``max_side_px``, ``max_aerial_features``), False
                for a ground image (``ground_max_side_px``, ``max_ground_features``).
            upright: describe keypoints at orientation 0 (see :meth:`_detect`).

        Returns:
            Keypoints in the original image's pixel coordinates and their descriptors.
        """
        cfg = self.config
        max_side = cfg.max_side_px if aerial else cfg.ground_side_px
        budget = cfg.aerial_features if aerial else cfg.ground_features
        detector = self._aerial_detector if aerial else self._ground_detector
        longest = max(image.shape[:2])
        scale = max_side / longest if max_side and longest > max_side else 1.0
        gray = self._preprocess(image, scale)
        mask: np.ndarray | None = None
        if valid_mask is not None:
            mask = np.asarray(valid_mask, dtype=bool).astype(np.uint8) * 255
            if mask.shape != gray.shape:
                mask = cv2.resize(
                    mask, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_NEAREST
                )
            if cfg.mask_erode_px > 0:
                k = 2 * max(1, round(cfg.mask_erode_px * scale)) + 1
                mask = cv2.erode(mask, np.ones((k, k), np.uint8), borderValue=0)
            if not mask.any():
                return _Features(np.zeros((0, 2)), None)
        return self._detect(gray, mask, detector, budget, scale=scale, upright=upright)

    def _detect(
        self,
        gray: np.ndarray,
        mask: np.ndarray | None,
        detector: cv2.Feature2D,
        budget: int,
        *,
        scale: float = 1.0,
        upright: bool = False,
        orientation_deg: float = 0.0,
    ) -> _Features:
        """Detect and describe on a preprocessed grey image.

        Args:
            gray: (H, W) uint8, preprocessed.
            mask: (H, W) uint8 detection mask (non-zero = allowed) or None.
            detector: the OpenCV detector.
            budget: keypoints kept (strongest responses first).
            scale: ``gray`` pixels per original pixel (isotropic), to map keypoints back.
            upright: describe every keypoint at one fixed orientation (SIFT, ORB): the
                image's orientation relative to the reference is known, so rotation
                invariance only costs distinctiveness.
            orientation_deg: that orientation (OpenCV keypoint angle, degrees; 0 = the
                image axes).

        Returns:
            Keypoints in the original image's pixel coordinates (``(p + 0.5) / scale - 0.5``)
            and their descriptors.
        """
        keypoints: Sequence[cv2.KeyPoint]
        if upright and self.config.feature != "akaze":
            upright_kps = _upright_keypoints(detector.detect(gray, mask), orientation_deg)
            keypoints, descriptors = detector.compute(gray, upright_kps)
        else:
            keypoints, descriptors = detector.detectAndCompute(gray, mask)
        descriptors = None if descriptors is None else np.asarray(descriptors)
        if descriptors is None or len(keypoints) == 0:
            return _Features(np.zeros((0, 2)), None)
        if len(keypoints) > budget:
            response = np.fromiter((kp.response for kp in keypoints), np.float64, len(keypoints))
            order = np.argsort(-response, kind="stable")[:budget]
            keypoints = [keypoints[i] for i in order]
            descriptors = descriptors[order]
        pts = np.asarray(cv2.KeyPoint_convert(keypoints), dtype=np.float64)  # type: ignore[attr-defined]
        pts = pts.reshape(-1, 2)
        # OpenCV puts pixel centres at integer coordinates; undo the resize around centres.
        pts = (pts + 0.5) / scale - 0.5
        return _Features(pts, descriptors)

    def _aerial_features(self, patch: AerialPatch, upright: bool = False) -> _Features:
        if self.config.cache_size == 0:
            return self.describe(patch.image, patch.valid_mask, aerial=True, upright=upright)
        if patch is self._last_patch:
            key = self._last_key
        else:
            key = patch_key(patch)
            self._last_patch, self._last_key = patch, key
        key = (*key, upright)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return cached
        self.cache_misses += 1
        feats = self.describe(patch.image, patch.valid_mask, aerial=True, upright=upright)
        self._cache[key] = feats
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)
        return feats

    def _candidates(
        self, ground_desc: np.ndarray, aerial_desc: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ratio-test + optional mutual check; returns (ground idx, aerial idx, ratio d1/d2)."""
        cfg = self.config
        mutual: np.ndarray | None = None
        if self._float_descriptors:
            t, d1, d2, mutual = nearest_neighbours_l2(ground_desc, aerial_desc)
            q = np.arange(len(t), dtype=np.int64)
        else:
            knn = self._matcher.knnMatch(ground_desc, aerial_desc, k=2)
            pairs = [p for p in knn if len(p) == 2]
            q = np.array([p[0].queryIdx for p in pairs], dtype=np.int64)
            t = np.array([p[0].trainIdx for p in pairs], dtype=np.int64)
            d1 = np.array([p[0].distance for p in pairs], dtype=np.float64)
            d2 = np.array([p[1].distance for p in pairs], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(d2 > 0.0, d1 / np.where(d2 > 0.0, d2, 1.0), np.inf)
        keep = ratio < cfg.ratio
        if cfg.mutual and mutual is not None:
            keep &= mutual
        q, t, ratio = q[keep], t[keep], ratio[keep]
        if cfg.mutual and mutual is None and len(q):
            # Reverse pass only for the aerial descriptors that passed the ratio test.
            uniq = np.unique(t)
            back = np.full(len(aerial_desc), -1, dtype=np.int64)
            for m in self._matcher.match(aerial_desc[uniq], ground_desc):
                back[uniq[m.queryIdx]] = m.trainIdx
            is_mutual = back[t] == q
            q, t, ratio = q[is_mutual], t[is_mutual], ratio[is_mutual]
        return q, t, ratio

    def match_features(self, ground: _Features, aerial: _Features) -> Correspondences:
        """Ratio test + optional mutual check between two described images."""
        empty = Correspondences(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
        if ground.descriptors is None or aerial.descriptors is None:
            return empty
        if len(ground.points_px) < 2 or len(aerial.points_px) < 2:
            return empty
        q, t, r_arr = self._candidates(ground.descriptors, aerial.descriptors)
        if len(q) == 0:
            return empty
        weights = np.clip(1.0 - r_arr, 0.0, 1.0)
        order = np.argsort(-weights, kind="stable")
        if self.config.max_matches:
            order = order[: self.config.max_matches]
        return Correspondences(
            ground_px=ground.points_px[q[order]],
            aerial_px=aerial.points_px[t[order]],
            weights=weights[order],
        )

    def match(self, ground_image: UInt8Array, patch: AerialPatch) -> Correspondences:
        """Match a ground image against an aerial patch.

        Args:
            ground_image: (H, W, 3) uint8 RGB or (H, W) uint8 mono camera image.
            patch: north-up aerial patch; keypoints are detected only where ``valid_mask``.

        Returns:
            Correspondences (ground pixels, aerial pixels, weights in [0, 1]) sorted by
            decreasing weight; empty when nothing matched.

        Raises:
            ValueError: when ``ground_image`` is not a uint8 image.
        """
        ground_image = np.asarray(ground_image)
        if ground_image.dtype != np.uint8:
            raise ValueError(f"ground_image must be uint8, got {ground_image.dtype}")
        if ground_image.size == 0:
            raise ValueError("ground_image is empty")
        ground = self.describe(ground_image, aerial=False)
        aerial = self._aerial_features(patch)
        result = self.match_features(ground, aerial)
        LOGGER.debug(
            "classical %s: %d ground / %d aerial keypoints -> %d matches",
            self.config.feature,
            len(ground.points_px),
            len(aerial.points_px),
            len(result),
        )
        return result

    def match_view(
        self, ground_image: UInt8Array, patch: AerialPatch, view: MatchView
    ) -> Correspondences:
        """Match the ground image, resampled to the view's scale, against the patch.

        The ground image is area-averaged to ``view.scale`` (never upsampled) and contrast
        equalised; keypoints are detected at that resolution without the fixed
        ``ground_max_side_px`` downscale, so the image keeps every detail at the patch's
        resolution. The view's rotation needs no resampling: rotation-invariant descriptors
        ignore it, and with ``view.upright`` (SIFT, ORB; AKAZE stays rotation invariant) every
        ground keypoint is described at the orientation that the north-up view would give
        orientation 0 -- the same descriptor as upright on the rotated image -- and the patch
        keypoints at orientation 0.

        Args:
            ground_image: (H, W, 3) uint8 RGB or (H, W) uint8 mono camera image.
            patch: north-up aerial patch, ideally at ``view.m_per_px``.
            view: the view (:func:`cvgl_ros.core.view.plan_view`).

        Returns:
            Correspondences, ground pixels in the original image's coordinates, sorted by
            decreasing weight.

        Raises:
            ValueError: when ``ground_image`` is not a non-empty uint8 image.
        """
        ground_image = np.asarray(ground_image)
        if ground_image.dtype != np.uint8 or ground_image.size == 0:
            raise ValueError(f"ground_image must be a non-empty uint8 image, got {ground_image}")
        cfg = self.config
        h, w = ground_image.shape[:2]
        resize, _, _ = view_from_image(w, h, replace(view, rotation_rad=0.0))
        gray = self._preprocess(ground_image, view.scale)
        upright = view.upright and cfg.feature != "akaze"
        ground = self._detect(
            gray,
            None,
            self._ground_detector,
            cfg.ground_features,
            upright=upright,
            # OpenCV's keypoint angle is clockwise in the image: a view rotated by +theta
            # (counter-clockwise in MatchView's convention) sees angle 0 where this image
            # has -theta.
            orientation_deg=float((-math.degrees(view.rotation_rad)) % 360.0),
        )
        if len(ground.points_px):
            ground = _Features(
                apply_affine(invert_affine(resize), ground.points_px), ground.descriptors
            )
        aerial = self._aerial_features(patch, upright=upright)
        result = self.match_features(ground, aerial)
        LOGGER.debug(
            "classical %s view (scale %.3f, rotation %.1f deg, upright %s): %d ground / %d "
            "aerial keypoints -> %d matches",
            cfg.feature,
            view.scale,
            math.degrees(view.rotation_rad),
            upright,
            len(ground.points_px),
            len(aerial.points_px),
            len(result),
        )
        return result
