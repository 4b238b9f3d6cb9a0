"""Frozen configurations of the matchers and depth providers (no heavy imports).

``MatcherConfig`` and ``DepthConfig`` are what the node and the tools build from parameters;
:func:`cvgl_ros.models.factory.build_matcher` and :func:`~cvgl_ros.models.factory.build_depth`
turn them into objects implementing the core's ``Matcher`` and ``DepthProvider`` protocols.
Fields declared with :func:`~cvgl_ros.core.schema.param` are node parameters; the sub-config
of a matcher or depth kind is a parameter section only while that kind is selected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from cvgl_ros.core.schema import Presets, check_ranges, param, section

BackendKind = Literal["auto", "torch", "onnxruntime", "tensorrt"]
BACKEND_KINDS: tuple[str, ...] = ("auto", "torch", "onnxruntime", "tensorrt")
DeviceKind = Literal["cpu", "cuda"]
DEVICE_KINDS: tuple[str, ...] = ("cpu", "cuda")
MatcherKind = Literal["classical", "learned"]
MATCHER_KINDS: tuple[str, ...] = ("classical", "learned")
DepthKind = Literal["ground_plane", "constant_range", "model"]
DEPTH_KINDS: tuple[str, ...] = ("ground_plane", "constant_range", "model")
DepthVariant = Literal["small", "base", "large"]
DEPTH_VARIANTS: tuple[str, ...] = ("small", "base", "large")


FeatureKind = Literal["sift", "akaze", "orb"]
FEATURE_KINDS: tuple[str, ...] = ("sift", "akaze", "orb")


CLASSICAL_PRESETS = Presets(
    {
        # The field defaults below: 800 camera keypoints detected on at most 320 px, 4000 on
        # the aerial patch, ratio 0.8, CLAHE; >= 10 Hz at 640x480 on 2 CPU cores.
        "default": {},
        # Drones matched at the camera's ground resolution (view.adaptive): the resampled
        # camera view is larger than 320 px and its few distinctive features matter.
        "drone": {
            "max_ground_features": 2000,  # camera keypoints per frame: the per-frame cost
        },
    },
    description="""classical matcher internals (keypoint budgets, detection sizes, ratio
        test, CLAHE, aerial feature cache): default (800 camera keypoints per frame, >= 10 Hz
        at 640x480 on 2 cores) or drone (2000 camera keypoints: nadir views matched at the
        ground resolution, view.adaptive). ClassicalMatcherConfig documents every value.""",
)
"""Named classical matcher internals (``matcher.classical.preset``)."""


@dataclass(frozen=True)
class ClassicalMatcherConfig:
    """Configuration of :class:`~cvgl_ros.models.classical.ClassicalMatcher`.

    Attributes:
        feature: parameter ``matcher.classical.feature``.
        ratio: Lowe ratio-test threshold on d1/d2 (0 < ratio <= 1); lower is stricter.
        max_features: keypoints kept per image (strongest responses first), unless
            ``max_ground_features`` / ``max_aerial_features`` set a budget of their own.
        mutual: keep a match only when it is also the best match in the reverse direction.
        clahe: apply CLAHE contrast equalisation before detection (helps hazy or dark imagery).
        clahe_clip_limit: CLAHE contrast limit.
        clahe_tile_grid: CLAHE tiles per image side.
        max_side_px: downscale an image whose longer side exceeds this before detection
            (0 = never); coordinates are returned in the original image's pixels.
        ground_max_side_px: downscale the ground (camera) image whose longer side exceeds this
            before detection (0 = ``max_side_px`` applies). Detection time grows with the
            pixel count, and a camera image is usually finer than the aerial patch, so its
            finest details have no aerial counterpart anyway; coordinates are returned in
            the original image's pixels.
        max_ground_features: keypoints kept on the ground image (strongest first; 0 =
            ``max_features``). Descriptor computation and matching cost grow with it; 800
            keeps several hundred matches on a nadir frame.
        max_aerial_features: keypoints kept on the aerial patch (strongest first; 0 =
            ``max_features``).
        mask_erode_px: erode the aerial ``valid_mask`` by this many pixels so that descriptors
            do not straddle the no-data border.
        max_matches: keep at most this many matches, the highest weights first (0 = all).
        cache_size: aerial patches whose features are kept (keyed by image content and
            georeference), so an unchanged patch is described only once.
    """

    PRESETS: ClassVar[Presets] = CLASSICAL_PRESETS

    feature: FeatureKind = param(
        "sift",
        description="""detector/descriptor: sift (float descriptors, most robust), akaze
            (binary, faster) or orb (binary, fastest, least robust across scale).""",
    )
    ratio: float = 0.8
    max_features: int = 4000
    mutual: bool = True
    clahe: bool = True
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    max_side_px: int = 1600
    ground_max_side_px: int = 320
    max_ground_features: int = 800
    max_aerial_features: int = 0
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
        if self.ground_max_side_px != 0 and self.ground_max_side_px < 64:
            raise ValueError(
                f"ground_max_side_px must be 0 or >= 64, got {self.ground_max_side_px}"
            )
        for name in ("max_ground_features", "max_aerial_features"):
            value = getattr(self, name)
            if value != 0 and value < 8:
                raise ValueError(f"{name} must be 0 or >= 8, got {value}")
        if self.mask_erode_px < 0:
            raise ValueError(f"mask_erode_px must be >= 0, got {self.mask_erode_px}")
        if self.max_matches < 0:
            raise ValueError(f"max_matches must be >= 0, got {self.max_matches}")
        if self.cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {self.cache_size}")

    @property
    def ground_features(self) -> int:
        """Keypoint budget of the ground image."""
        return self.max_ground_features or self.max_features

    @property
    def aerial_features(self) -> int:
        """Keypoint budget of the aerial patch."""
        return self.max_aerial_features or self.max_features

    @property
    def ground_side_px(self) -> int:
        """Longest side of the ground image at detection (0 = no limit)."""
        return self.ground_max_side_px or self.max_side_px


def _check_backend(backend: str, device: str) -> None:
    if backend not in BACKEND_KINDS:
        raise ValueError(f"backend must be one of {BACKEND_KINDS}, got {backend!r}")
    if device not in DEVICE_KINDS:
        raise ValueError(f"device must be one of {DEVICE_KINDS}, got {device!r}")
    if backend == "tensorrt" and device != "cuda":
        raise ValueError("backend 'tensorrt' needs device 'cuda'")


def _check_int8(int8: bool, backend: str, device: str) -> None:
    if not isinstance(int8, bool):
        raise ValueError(f"int8 must be a bool, got {int8!r}")
    if int8 and (backend not in ("auto", "onnxruntime") or device != "cpu"):
        raise ValueError("int8 needs backend 'onnxruntime' (or 'auto') on device 'cpu'")


def _check_size(name: str, size: tuple[int, int] | None) -> None:
    if size is None:
        return
    if len(size) != 2 or any(int(s) < 14 for s in size):
        raise ValueError(f"{name} must be (height_px, width_px) with both >= 14, got {size}")


@dataclass(frozen=True)
class LearnedMatcherConfig:
    """Configuration of the learned matcher (DINOv2 + projection head + dual softmax).

    Attributes:
        checkpoint_path: parameter ``matcher.learned.checkpoint_path``.
        backbone_weights_path: parameter ``matcher.learned.backbone_weights_path``.
        backend: parameter ``matcher.learned.backend``.
        device: parameter ``matcher.learned.device``.
        fp16: parameter ``matcher.learned.fp16``.
        engine_dir: parameter ``matcher.learned.engine_dir``.
        top_k: correspondences sampled per frame (highest probability first).
        min_probability: drop matches whose probability is below this.
        mutual: keep only mutual row/column maxima of the probability matrix.
        ground_size_px: (height, width) override of the checkpoint's ground input size.
        aerial_size_px: (height, width) override of the checkpoint's aerial input size.
        cache_size: aerial patches whose features are kept.
        num_threads: parameter ``matcher.learned.num_threads``.
        int8: parameter ``matcher.learned.int8``.
    """

    checkpoint_path: str = param(
        "",
        description="""matcher checkpoint (.safetensors with its .json beside it, or a
            directory holding matcher.safetensors + matcher.json); it names the backbone and
            carries the head weights and input sizes.""",
    )
    backbone_weights_path: str = param(
        "",
        description="""local DINOv2 weights: a Hugging Face directory (config.json +
            model.safetensors) or an original dinov2_vit{s,b,l}14_pretrain.pth.""",
    )
    backend: BackendKind = param(
        "auto",
        description="""auto (ONNX Runtime when engine_dir holds the exported
            matcher_ground.onnx + matcher_aerial.onnx, TensorRT on CUDA when it holds the
            .engine files, else torch), torch, onnxruntime or tensorrt.""",
    )
    device: DeviceKind = param("cpu", description="cpu or cuda.")
    fp16: bool = param(False, description="run in half precision (CUDA only).")
    engine_dir: str = param(
        "engines",
        description="""directory of the exported matcher_ground.onnx / .engine files for the
            onnxruntime / tensorrt backends. Relative model paths (this, checkpoint_path,
            backbone_weights_path) resolve against the model directory, never the working
            directory: $CVGL_ROS_MODEL_DIR, else the cvgl_ros source checkout, else the
            installed share/cvgl_ros (docs/MODELS.md).""",
    )
    top_k: int = 1024
    min_probability: float = 0.0
    mutual: bool = True
    ground_size_px: tuple[int, int] | None = None
    aerial_size_px: tuple[int, int] | None = None
    cache_size: int = 2
    num_threads: int = param(
        2, description="CPU threads for torch / ONNX Runtime.", range=(1, 256)
    )
    int8: bool = param(
        False,
        description="""ONNX Runtime on CPU: run dynamically quantized INT8 copies of the
            exported networks (about 1.5x faster on AVX2; descriptors change slightly:
            validate with real weights). Ignored, with a warning, when auto falls back to
            torch.""",
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        _check_backend(self.backend, self.device)
        _check_int8(self.int8, self.backend, self.device)
        if self.fp16 and self.device != "cuda":
            raise ValueError("fp16 needs device 'cuda'")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0.0 <= self.min_probability < 1.0:
            raise ValueError(f"min_probability must be in [0, 1), got {self.min_probability}")
        _check_size("ground_size_px", self.ground_size_px)
        _check_size("aerial_size_px", self.aerial_size_px)
        if self.cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {self.cache_size}")


@dataclass(frozen=True)
class MatcherConfig:
    """Which matcher to build, and its sub-configuration.

    Attributes:
        kind: parameter ``matcher.kind``.
        classical: used when ``kind == "classical"`` (parameters ``matcher.classical.*``).
        learned: used when ``kind == "learned"`` (parameters ``matcher.learned.*``).
    """

    kind: MatcherKind = param(
        "classical",
        description="""classical (OpenCV SIFT/AKAZE/ORB; no weights needed; nadir and oblique
            drone cameras) or learned (DINOv2 + trained head, docs/TRAINING.md). Declares
            matcher.<kind>.* for the selected kind only.""",
    )
    classical: ClassicalMatcherConfig = section(
        ClassicalMatcherConfig, only_for=("kind", ("classical",))
    )
    learned: LearnedMatcherConfig = section(LearnedMatcherConfig, only_for=("kind", ("learned",)))

    def __post_init__(self) -> None:
        if self.kind not in MATCHER_KINDS:
            raise ValueError(f"kind must be one of {MATCHER_KINDS}, got {self.kind!r}")
        if self.kind == "learned" and not self.learned.checkpoint_path:
            raise ValueError("learned.checkpoint_path is required when kind is 'learned'")


@dataclass(frozen=True)
class DepthModelConfig:
    """Configuration of the Depth Anything V2 depth provider.

    Every field is a ``depth.model.*`` parameter (with ``depth.kind: model``).
    """

    weights_path: str = param(
        "",
        description="""local weights: a Hugging Face directory (config.json +
            model.safetensors) or an original depth_anything_v2_vit{s,b,l}.pth /
            depth_anything_v2_metric_*_vit{s,b,l}.pth checkpoint. Required for the torch
            backend: start-up refuses an empty path rather than run random weights.""",
    )
    variant: DepthVariant = param(
        "small",
        description="small (Apache-2.0), base or large (both CC-BY-NC-4.0).",
    )
    metric: bool = param(
        False,
        description="""true for the metric fine-tunes (output in metres), false for relative
            (affine-invariant inverse depth; the pose scale absorbs the unknown scale).""",
    )
    max_depth_m: float = param(
        80.0,
        description="the metric head's range, metres (20 indoor, 80 outdoor).",
        range=(0.1, 10000.0),
    )
    input_size_px: tuple[int, int] = param(
        (266, 266),
        description="(height, width) fed to the network, pixels; rounded to multiples of 14.",
        range=(14, 4096),
    )
    backend: BackendKind = param(
        "auto",
        description="""auto (ONNX Runtime when engine_path names an existing .onnx file,
            TensorRT on CUDA for an existing .engine, else torch), torch, onnxruntime or
            tensorrt.""",
    )
    device: DeviceKind = param("cpu", description="cpu or cuda.")
    fp16: bool = param(False, description="half precision (CUDA only).")
    engine_path: str = param(
        "",
        description="""the exported .onnx / .engine for the onnxruntime / tensorrt backends.
            Relative paths (this and weights_path) resolve against the model directory, as
            matcher.learned.engine_dir does.""",
    )
    num_threads: int = param(
        2, description="CPU threads for torch / ONNX Runtime.", range=(1, 256)
    )
    int8: bool = param(
        False,
        description="""ONNX Runtime on CPU: run a dynamically quantized INT8 copy of
            engine_path (about 1.4x faster on AVX2; validate with real weights). Ignored, with
            a warning, when auto falls back to torch.""",
    )

    def __post_init__(self) -> None:
        _check_int8(self.int8, self.backend, self.device)
        if self.variant not in DEPTH_VARIANTS:
            raise ValueError(f"variant must be one of {DEPTH_VARIANTS}, got {self.variant!r}")
        if len(self.input_size_px) != 2:
            raise ValueError(
                f"input_size_px must be (height_px, width_px), got {self.input_size_px}"
            )
        check_ranges(self)
        _check_backend(self.backend, self.device)
        if self.fp16 and self.device != "cuda":
            raise ValueError("fp16 needs device 'cuda'")
        if self.backend not in ("torch", "auto") and not self.engine_path:
            raise ValueError(f"engine_path is required for backend {self.backend!r}")


@dataclass(frozen=True)
class DepthConfig:
    """Which depth provider to build.

    Attributes:
        kind: parameter ``depth.kind``.
        camera_height_m: parameter ``depth.camera_height_m`` (``ground_plane``).
        range_m: parameter ``depth.range_m`` (``constant_range``).
        model: used when ``kind == "model"`` (parameters ``depth.model.*``).
    """

    kind: DepthKind = param(
        "ground_plane",
        description="""ground_plane (flat ground seen from a known camera height: ground
            vehicles; depth.camera_height_m), constant_range (one range for every pixel: nadir
            cameras at a known altitude, the pose scale absorbs any error; depth.range_m) or
            model (Depth Anything V2; depth.model.*).""",
    )
    camera_height_m: float = param(
        1.6,
        description="camera height above the ground plane, metres.",
        range=(0.01, 10000.0),
        only_for=("kind", ("ground_plane",)),
    )
    range_m: float = param(
        100.0,
        description="""the constant range, metres: roughly the flight altitude above ground.
            Also the camera height of adaptive matching when height.ground_elevation_m is
            unset (the pose scale absorbs any error, the matching resolution does not).""",
        range=(0.01, 1e6),
        only_for=("kind", ("constant_range",)),
    )
    model: DepthModelConfig = section(DepthModelConfig, only_for=("kind", ("model",)))

    def __post_init__(self) -> None:
        if self.kind not in DEPTH_KINDS:
            raise ValueError(f"kind must be one of {DEPTH_KINDS}, got {self.kind!r}")
        check_ranges(self)
