"""Learned matcher: frozen DINOv2 + projection head + dual softmax (Loc2-style).

Per frame only the ground image runs through the network; the aerial patch's descriptors come
from an :class:`~cvgl_ros.models.cache.AerialFeatureCache`. The dual softmax and top-K
selection run in numpy on the descriptors, so the same code serves the torch, ONNX Runtime and
TensorRT backends (each runs the "features" network: image -> descriptors).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.backends.base import (
    InferenceBackend,
    check_image_input_size,
    open_backend,
    resolve_backend_kind,
)
from cvgl_ros.backends.errors import BackendError
from cvgl_ros.core.types import AerialPatch, Correspondences, UInt8Array
from cvgl_ros.core.view import MatchView, apply_affine
from cvgl_ros.models.cache import AerialFeatureCache
from cvgl_ros.models.checkpoint import MatcherCheckpoint, load_matcher_checkpoint
from cvgl_ros.models.config import LearnedMatcherConfig
from cvgl_ros.models.errors import WeightsError
from cvgl_ros.models.matching import dual_softmax, select_matches, token_centers_px
from cvgl_ros.models.paths import resolve_model_path
from cvgl_ros.models.preprocess import prepare_image, render_view

LOGGER = logging.getLogger(__name__)

PATCH_SIZE_PX = 14
FEATURES_INPUT = "images"
FEATURES_OUTPUT = "descriptors"
# File names of the exported features networks inside LearnedMatcherConfig.engine_dir.
GROUND_FEATURES_STEM = "matcher_ground"
AERIAL_FEATURES_STEM = "matcher_aerial"


class _Described:
    """Descriptors of one image: (N, D) float32 and their (N, 2) pixel centres."""

    def __init__(self, descriptors: np.ndarray, points_px: np.ndarray) -> None:
        self.descriptors = descriptors
        self.points_px = points_px


class LearnedMatcher:
    """Implements :class:`cvgl_ros.core.interfaces.Matcher` with learned descriptors.

    Args:
        ground_features: backend running ground images (1, 3, Hg, Wg) -> descriptors
            (1, Hg/14, Wg/14, D).
        aerial_features: backend for aerial patches (1, 3, Ha, Wa) -> (1, Ha/14, Wa/14, D);
            may be the same object as ``ground_features`` for the torch backend.
        checkpoint: the matcher checkpoint (temperature, dustbin, input sizes).
        config: runtime options (top-K, mutual, size overrides, cache size).
    """

    def __init__(
        self,
        ground_features: InferenceBackend,
        aerial_features: InferenceBackend,
        checkpoint: MatcherCheckpoint,
        config: LearnedMatcherConfig | None = None,
    ) -> None:
        self.config = config or LearnedMatcherConfig()
        self.checkpoint = checkpoint
        self._ground = ground_features
        self._aerial = aerial_features
        ck = checkpoint.config
        self.ground_size_px = _round_size(self.config.ground_size_px or ck.ground_size_px)
        self.aerial_size_px = _round_size(self.config.aerial_size_px or ck.aerial_size_px)
        for backend, size, role, override in (
            (self._ground, self.ground_size_px, "ground", "ground_size_px"),
            (self._aerial, self.aerial_size_px, "aerial", "aerial_size_px"),
        ):
            h, w = size
            check_image_input_size(
                backend,
                size,
                f"the learned matcher's {role} images (checkpoint or matcher.learned.{override})",
                f"export it for this size (cvgl-ros export --model features --height {h} "
                f"--width {w} --out {getattr(backend, 'path', 'FILE.onnx')}; rebuild a "
                f"TensorRT engine from it) or set matcher.learned.{override} to the file's size",
            )
        self.temperature = checkpoint.temperature
        self.dustbin_score = checkpoint.dustbin_score
        self.cache: AerialFeatureCache[_Described] = AerialFeatureCache(
            self._describe_patch, max_entries=self.config.cache_size
        )
        # Per-stage wall times of the last match() call, seconds: "ground" (network),
        # "aerial" (network, only on a cache miss), "matching" (dual softmax + selection).
        self.last_latency_s: dict[str, float] = {}
        self._centers: dict[tuple[object, ...], np.ndarray] = {}

    @classmethod
    def from_config(cls, config: LearnedMatcherConfig) -> LearnedMatcher:
        """Load the checkpoint and open the configured backend.

        ``backend="auto"`` picks ONNX Runtime on CPU (TensorRT on CUDA) when the exported
        ``matcher_ground`` / ``matcher_aerial`` files are in ``engine_dir`` and the package is
        installed, else torch (see :func:`cvgl_ros.backends.base.resolve_backend_kind`).

        Raises:
            CheckpointError / WeightsError: missing or malformed weights.
            MissingExtraError: the backend's package is not installed.
        """
        # Relative paths resolve against the model directory, never the working directory
        # (cvgl_ros.models.paths).
        checkpoint = load_matcher_checkpoint(
            resolve_model_path(config.checkpoint_path, "learned.checkpoint_path")
        )
        # An empty engine_dir is the model directory itself.
        engine_dir = resolve_model_path(config.engine_dir, "learned.engine_dir")
        backbone_weights = (
            resolve_model_path(config.backbone_weights_path, "learned.backbone_weights_path")
            if config.backbone_weights_path
            else None
        )
        stems = (GROUND_FEATURES_STEM, AERIAL_FEATURES_STEM)
        onnx_paths = [engine_dir / f"{s}.onnx" for s in stems]
        if config.backend == "auto" and sum(p.is_file() for p in onnx_paths) == 1:
            missing = next(p for p in onnx_paths if not p.is_file())
            raise BackendError(
                f"{missing} not found (engine_dir {engine_dir} holds only one of the two): "
                "export both "
                f"{GROUND_FEATURES_STEM}.onnx and {AERIAL_FEATURES_STEM}.onnx "
                "(cvgl-ros export --model features)"
            )
        kind = resolve_backend_kind(
            config.backend,
            config.device,
            onnx_paths=onnx_paths,
            engine_paths=[engine_dir / f"{s}.engine" for s in stems],
        )
        if kind == "torch":
            if config.int8:
                LOGGER.warning(
                    "learned.int8 ignored: no ONNX files in %s (torch backend)", engine_dir
                )
            if backbone_weights is None:
                raise WeightsError(
                    "learned.backbone_weights_path is required for the torch backend (a HF "
                    "DINOv2 directory or dinov2_vit*14_pretrain.pth); or export "
                    f"{GROUND_FEATURES_STEM}.onnx / {AERIAL_FEATURES_STEM}.onnx into "
                    f"{engine_dir} for ONNX Runtime (cvgl-ros export --model features)"
                )
            net = build_features_network(checkpoint, backbone_weights)
            backend = open_backend(
                "torch",
                net,
                device=config.device,
                fp16=config.fp16,
                num_threads=config.num_threads,
                input_names=(FEATURES_INPUT,),
                output_names=(FEATURES_OUTPUT,),
            )
            return cls(backend, backend, checkpoint, config)
        suffix = ".onnx" if kind == "onnxruntime" else ".engine"
        int8 = config.int8 and kind == "onnxruntime"
        ground = open_backend(
            kind,
            engine_dir / f"{GROUND_FEATURES_STEM}{suffix}",
            device=config.device,
            num_threads=config.num_threads,
            int8=int8,
        )
        aerial = open_backend(
            kind,
            engine_dir / f"{AERIAL_FEATURES_STEM}{suffix}",
            device=config.device,
            num_threads=config.num_threads,
            int8=int8,
        )
        return cls(ground, aerial, checkpoint, config)

    def _run(
        self, backend: InferenceBackend, image: np.ndarray, size: tuple[int, int]
    ) -> _Described:
        x = prepare_image(image, size)
        out = backend.run({backend.input_names[0]: x})[backend.output_names[0]]
        if out.ndim != 4 or out.shape[0] != 1:
            raise ValueError(f"features network returned shape {out.shape}, expected (1, h, w, D)")
        grid = (int(out.shape[1]), int(out.shape[2]))
        desc = np.ascontiguousarray(out[0].reshape(-1, out.shape[3]), dtype=np.float32)
        key = (grid, size, image.shape[0], image.shape[1])
        pts = self._centers.get(key)
        if pts is None:
            pts = token_centers_px(grid, size, (image.shape[0], image.shape[1]))
            pts.setflags(write=False)
            if len(self._centers) > 8:
                self._centers.clear()
            self._centers[key] = pts
        return _Described(desc, pts)

    def _describe_patch(self, patch: AerialPatch) -> _Described:
        described = self._run(self._aerial, patch.image, self.aerial_size_px)
        self.last_latency_s["aerial"] = self._aerial.last_latency_s
        # Drop tokens whose centre falls on no-data so they cannot attract matches.
        h, w = patch.valid_mask.shape
        uv = np.clip(np.round(described.points_px).astype(np.int64), 0, [w - 1, h - 1])
        valid = patch.valid_mask[uv[:, 1], uv[:, 0]]
        desc = np.ascontiguousarray(described.descriptors[valid])
        pts = described.points_px[valid]
        desc.setflags(write=False)
        pts.setflags(write=False)
        return _Described(desc, pts)

    def match(self, ground_image: UInt8Array, patch: AerialPatch) -> Correspondences:
        """Match a ground image against an aerial patch.

        Args:
            ground_image: (H, W, 3) uint8 RGB or (H, W) uint8 mono camera image.
            patch: north-up aerial patch.

        Returns:
            Up to ``top_k`` correspondences, token centres in pixels of both images, weights =
            dual-softmax probabilities in [0, 1], sorted by decreasing weight.
        """
        ground_image = np.asarray(ground_image)
        if ground_image.dtype != np.uint8 or ground_image.size == 0:
            raise ValueError(
                f"ground_image must be a non-empty uint8 image, got {ground_image.dtype}"
            )
        self.last_latency_s = {}
        ground = self._run(self._ground, ground_image, self.ground_size_px)
        self.last_latency_s["ground"] = self._ground.last_latency_s
        aerial = self.cache.get(patch)
        start = time.perf_counter()
        if len(aerial.descriptors) == 0:
            return Correspondences(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
        probs = dual_softmax(
            ground.descriptors, aerial.descriptors, self.temperature, self.dustbin_score
        )
        gi, ai, p = select_matches(
            probs, self.config.top_k, self.config.mutual, self.config.min_probability
        )
        corr = Correspondences(ground.points_px[gi], aerial.points_px[ai], np.clip(p, 0.0, 1.0))
        self.last_latency_s["matching"] = time.perf_counter() - start
        return corr

    def match_view(
        self, ground_image: UInt8Array, patch: AerialPatch, view: MatchView
    ) -> Correspondences:
        """Match the view of the ground image (resampled, rotated north-up with a yaw prior).

        DINOv2 features are not rotation invariant: a nadir image turned to the patch's
        north-up orientation matches far better. Matches whose ground point falls outside the
        rotated image (the canvas corners) are dropped.

        Returns:
            Correspondences with ground pixels in the original image's coordinates.
        """
        view_image, inside, image_from_view = render_view(np.asarray(ground_image), view)
        corr = self.match(view_image, patch)
        if len(corr) == 0:
            return corr
        h, w = inside.shape
        uv = np.clip(np.round(corr.ground_px).astype(np.int64), 0, [w - 1, h - 1])
        keep = inside[uv[:, 1], uv[:, 0]]
        return Correspondences(
            apply_affine(image_from_view, corr.ground_px[keep]),
            corr.aerial_px[keep],
            corr.weights[keep],
        )

    @property
    def ground_backend(self) -> InferenceBackend:
        """The backend describing ground images."""
        return self._ground

    @property
    def aerial_backend(self) -> InferenceBackend:
        """The backend describing aerial patches (may be :attr:`ground_backend` itself)."""
        return self._aerial

    def close(self) -> None:
        """Close the backends."""
        self._ground.close()
        if self._aerial is not self._ground:
            self._aerial.close()


def _round_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = size
    return (
        max(PATCH_SIZE_PX, round(h / PATCH_SIZE_PX) * PATCH_SIZE_PX),
        max(PATCH_SIZE_PX, round(w / PATCH_SIZE_PX) * PATCH_SIZE_PX),
    )


# --- torch networks (imported lazily: these need torch) ------------------------------------


def build_features_network(
    checkpoint: MatcherCheckpoint, backbone_weights_path: str | Path | None, **kwargs: Any
) -> Any:
    """DINOv2 + projection head with the checkpoint's head weights: images -> descriptors.

    Args:
        checkpoint: matcher checkpoint (head weights, backbone id).
        backbone_weights_path: local DINOv2 weights; None = random backbone of the right
            architecture (tests, benchmarks).
        **kwargs: passed to :func:`cvgl_ros.models.backbone.dinov2_config` when random.

    Returns:
        ``FeaturesNetwork`` (torch module) in eval mode.
    """
    from cvgl_ros.models.networks import FeaturesNetwork

    return FeaturesNetwork.from_checkpoint(checkpoint, backbone_weights_path, **kwargs)
