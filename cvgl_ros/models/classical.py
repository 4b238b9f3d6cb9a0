"""Classical feature matcher (OpenCV SIFT / AKAZE / ORB) for nadir and oblique drone cameras.

The out-of-the-box matcher when no learned weights are installed. Keypoints are detected on
both images (the aerial patch only where ``valid_mask`` is True), matched with Lowe's ratio
test and a mutual nearest-neighbour check. All three detectors assign a dominant orientation
to every keypoint, so matching is invariant to the unknown yaw between the camera and the
north-up patch; scale invariance comes from their scale pyramids.

Each correspondence gets a weight in [0, 1] from its ratio-test score: ``1 - d1 / d2`` where
``d1`` and ``d2`` are the distances to the best and second-best neighbour, so a unique match
weighs close to 1 and an ambiguous one close to ``1 - ratio``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from cvgl_ros.core.types import AerialPatch, Correspondences, FloatArray, UInt8Array

LOGGER = logging.getLogger(__name__)

FeatureKind = Literal["sift", "akaze", "orb"]
FEATURE_KINDS: tuple[str, ...] = ("sift", "akaze", "orb")


@dataclass(frozen=True)
class ClassicalMatcherConfig:
    """Configuration of :class:`ClassicalMatcher`.

    Attributes:
        feature: detector/descriptor: ``"sift"`` (float descriptors, most robust), ``"akaze"``
            (binary, faster) or ``"orb"`` (binary, fastest, least robust across scale).
        ratio: Lowe ratio-test threshold on d1/d2 (0 < ratio <= 1); lower is stricter.
        max_features: keypoints kept per image (strongest responses first).
        mutual: keep a match only when it is also the best match in the reverse direction.
        clahe: apply CLAHE contrast equalisation before detection (helps hazy or dark imagery).
        clahe_clip_limit: CLAHE contrast limit.
        clahe_tile_grid: CLAHE tiles per image side.
        max_side_px: downscale an image whose longer side exceeds this before detection
            (0 = never); coordinates are returned in the original image's pixels.
        mask_erode_px: erode the aerial ``valid_mask`` by this many pixels so that descriptors
            do not straddle the no-data border.
        max_matches: keep at most this many matches, the highest weights first (0 = all).
        cache_size: aerial patches whose features are kept (keyed by image content and
            georeference), so an unchanged patch is described only once.
    """

    feature: FeatureKind = "sift"
    ratio: float = 0.8
    max_features: int = 4000
    mutual: bool = True
    clahe: bool = True
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    max_side_px: int = 1600
    mask_erode_px: int = 4
    max_matches: int = 0
    cache_size: int = 4

    def __post_init__(self) -> None:
        if self.feature not in FEATURE_KINDS:
            raise ValueError(f"feature must be one of {FEATURE_KINDS}, got {self.feature!r}")
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if self.max_features < 8:
            raise ValueError(f"max_features must be >= 8, got {self.max_features}")
        if not self.clahe_clip_limit > 0.0:
            raise ValueError(f"clahe_clip_limit must be > 0, got {self.clahe_clip_limit}")
        if self.clahe_tile_grid < 1:
            raise ValueError(f"clahe_tile_grid must be >= 1, got {self.clahe_tile_grid}")
        if self.max_side_px != 0 and self.max_side_px < 64:
            raise ValueError(f"max_side_px must be 0 or >= 64, got {self.max_side_px}")
        if self.mask_erode_px < 0:
            raise ValueError(f"mask_erode_px must be >= 0, got {self.mask_erode_px}")
        if self.max_matches < 0:
            raise ValueError(f"max_matches must be >= 0, got {self.max_matches}")
        if self.cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {self.cache_size}")


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


class ClassicalMatcher:
    """OpenCV keypoint matcher implementing :class:`cvgl_ros.core.interfaces.Matcher`.

    Not thread-safe (OpenCV detectors and the feature cache are shared state); use one
    instance per worker thread.
    """

    def __init__(self, config: ClassicalMatcherConfig | None = None) -> None:
        self.config = config or ClassicalMatcherConfig()
        cfg = self.config
        self._detector: cv2.Feature2D
        if cfg.feature == "sift":
            self._detector = cv2.SIFT_create(  # type: ignore[attr-defined]
                nfeatures=cfg.max_features
            )
            norm = cv2.NORM_L2
        elif cfg.feature == "akaze":
            self._detector = cv2.AKAZE_create()  # type: ignore[attr-defined]
            norm = cv2.NORM_HAMMING
        else:
            self._detector = cv2.ORB_create(  # type: ignore[attr-defined]
                nfeatures=cfg.max_features
            )
            norm = cv2.NORM_HAMMING
        self._matcher = cv2.BFMatcher(norm, crossCheck=False)
        self._clahe = (
            cv2.createCLAHE(
                clipLimit=cfg.clahe_clip_limit,
                tileGridSize=(cfg.clahe_tile_grid, cfg.clahe_tile_grid),
            )
            if cfg.clahe
            else None
        )
        self._cache: OrderedDict[tuple[object, ...], _Features] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0

    def _preprocess(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Grayscale, optional downscale and CLAHE; returns the image and its scale factor."""
        gray = _to_gray(image)
        scale = 1.0
        longest = max(gray.shape)
        if self.config.max_side_px and longest > self.config.max_side_px:
            scale = self.config.max_side_px / longest
            size = (
                max(1, round(gray.shape[1] * scale)),
                max(1, round(gray.shape[0] * scale)),
            )
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        if self._clahe is not None:
            gray = self._clahe.apply(gray)
        return gray, scale

    def describe(self, image: np.ndarray, valid_mask: np.ndarray | None = None) -> _Features:
        """Detect and describe keypoints.

        Args:
            image: (H, W, 3) uint8 RGB or (H, W) uint8 mono.
            valid_mask: (H, W) bool, True where detection is allowed; None = everywhere.

        Returns:
            Keypoints in the original image's pixel coordinates and their descriptors.
        """
        gray, scale = self._preprocess(image)
        mask: np.ndarray | None = None
        if valid_mask is not None:
            mask = np.asarray(valid_mask, dtype=bool).astype(np.uint8) * 255
            if mask.shape != gray.shape:
                mask = cv2.resize(
                    mask, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_NEAREST
                )
            if self.config.mask_erode_px > 0:
                k = 2 * max(1, round(self.config.mask_erode_px * scale)) + 1
                mask = cv2.erode(mask, np.ones((k, k), np.uint8), borderValue=0)
            if not mask.any():
                return _Features(np.zeros((0, 2)), None)
        keypoints, descriptors = self._detector.detectAndCompute(gray, mask)
        descriptors = None if descriptors is None else np.asarray(descriptors)
        if descriptors is None or len(keypoints) == 0:
            return _Features(np.zeros((0, 2)), None)
        if len(keypoints) > self.config.max_features:
            order = np.argsort([-kp.response for kp in keypoints])[: self.config.max_features]
            keypoints = [keypoints[i] for i in order]
            descriptors = descriptors[order]
        pts = np.array([kp.pt for kp in keypoints], dtype=np.float64).reshape(-1, 2)
        # OpenCV puts pixel centres at integer coordinates; undo the resize around centres.
        pts = (pts + 0.5) / scale - 0.5
        return _Features(pts, descriptors)

    def _aerial_features(self, patch: AerialPatch) -> _Features:
        if self.config.cache_size == 0:
            return self.describe(patch.image, patch.valid_mask)
        key = patch_key(patch)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return cached
        self.cache_misses += 1
        feats = self.describe(patch.image, patch.valid_mask)
        self._cache[key] = feats
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)
        return feats

    def match_features(self, ground: _Features, aerial: _Features) -> Correspondences:
        """Ratio test + optional mutual check between two described images."""
        empty = Correspondences(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
        if ground.descriptors is None or aerial.descriptors is None:
            return empty
        if len(ground.points_px) < 2 or len(aerial.points_px) < 2:
            return empty
        knn = self._matcher.knnMatch(ground.descriptors, aerial.descriptors, k=2)
        q_idx, t_idx, ratios = [], [], []
        for pair in knn:
            if len(pair) < 2:
                continue
            best, second = pair
            if second.distance <= 0.0:
                continue
            r = best.distance / second.distance
            if r < self.config.ratio:
                q_idx.append(best.queryIdx)
                t_idx.append(best.trainIdx)
                ratios.append(r)
        if not q_idx:
            return empty
        q = np.asarray(q_idx, dtype=np.int64)
        t = np.asarray(t_idx, dtype=np.int64)
        r_arr = np.asarray(ratios, dtype=np.float64)
        if self.config.mutual:
            back = self._matcher.match(aerial.descriptors, ground.descriptors)
            best_ground_for_aerial = np.full(len(aerial.points_px), -1, dtype=np.int64)
            for m in back:
                best_ground_for_aerial[m.queryIdx] = m.trainIdx
            keep = best_ground_for_aerial[t] == q
            q, t, r_arr = q[keep], t[keep], r_arr[keep]
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
        ground = self.describe(ground_image)
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
