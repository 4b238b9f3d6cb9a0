"""Depth Anything V2 as a :class:`~cvgl_ros.core.interfaces.DepthProvider`.

transformers' ``DepthAnythingForDepthEstimation`` with the V2 architectures set explicitly
(Small by default: Apache-2.0; Base and Large weights are CC-BY-NC-4.0). Local weights only,
as a Hugging Face directory, its ``model.safetensors`` alone, or an original
``depth_anything_v2_vit{s,b,l}.pth`` /
``depth_anything_v2_metric_{hypersim,vkitti}_vit{s,b,l}.pth`` checkpoint.

Relative models predict an affine-invariant inverse depth (disparity); it is converted to a
depth proportional to ``1 / disparity``, whose unknown scale the pose solver's similarity
scale absorbs (the unknown shift is ignored, which is accurate when the shift is small
compared with the disparity, i.e. for the near and middle field that carries the matches).
Metric models predict metres directly.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cvgl_ros.backends.base import (
    InferenceBackend,
    check_image_input_size,
    open_backend,
    resolve_backend_kind,
)
from cvgl_ros.backends.errors import BackendError
from cvgl_ros.core.types import FloatArray, UInt8Array
from cvgl_ros.models.config import DepthModelConfig
from cvgl_ros.models.errors import WeightsError

if TYPE_CHECKING:
    from cvgl_ros.core.camera import CameraModel

LOGGER = logging.getLogger(__name__)

DEPTH_INPUT = "images"
DEPTH_OUTPUT = "depth"
# Relative 1-sigma scale error assumed for the metric models (see metric_scale_sigma).
METRIC_SCALE_SIGMA = 0.25
# Relative disparities below this fraction of the frame's maximum are treated as "infinitely
# far" (sky) and give NaN depth.
MIN_RELATIVE_DISPARITY = 1e-3


@dataclass(frozen=True)
class DepthAnythingSpec:
    """V2 architecture of one size."""

    backbone_id: str
    out_indices: tuple[int, ...]
    fusion_hidden_size: int
    neck_hidden_sizes: tuple[int, int, int, int]


DEPTH_SPECS: dict[str, DepthAnythingSpec] = {
    "small": DepthAnythingSpec("dinov2_vits14", (3, 6, 9, 12), 64, (48, 96, 192, 384)),
    "base": DepthAnythingSpec("dinov2_vitb14", (3, 6, 9, 12), 128, (96, 192, 384, 768)),
    "large": DepthAnythingSpec("dinov2_vitl14", (5, 12, 18, 24), 256, (256, 512, 1024, 1024)),
}


def depth_anything_config(
    variant: str = "small",
    metric: bool = False,
    max_depth_m: float = 80.0,
    num_layers: int | None = None,
) -> Any:
    """A ``DepthAnythingConfig`` for Depth Anything V2 with every field set explicitly.

    Args:
        variant: ``"small"``, ``"base"`` or ``"large"``.
        metric: metric head (sigmoid * max_depth) instead of relative (ReLU disparity).
        max_depth_m: range of the metric head, metres.
        num_layers: fewer backbone layers (tests only); the four DPT taps are spread evenly.
    """
    from cvgl_ros.models.backbone import dinov2_config, transformers

    if variant not in DEPTH_SPECS:
        raise ValueError(f"variant must be one of {sorted(DEPTH_SPECS)}, got {variant!r}")
    spec = DEPTH_SPECS[variant]
    out_indices = list(spec.out_indices)
    if num_layers is not None:
        if num_layers < 4:
            raise ValueError(f"num_layers must be >= 4 (four DPT taps), got {num_layers}")
        out_indices = [round(num_layers * (i + 1) / 4) for i in range(4)]
    backbone = dinov2_config(
        spec.backbone_id,
        num_layers=num_layers,
        out_indices=out_indices,
        apply_layernorm=True,
        reshape_hidden_states=False,
    )
    return transformers.DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=backbone.hidden_size,
        patch_size=14,
        fusion_hidden_size=spec.fusion_hidden_size,
        neck_hidden_sizes=list(spec.neck_hidden_sizes),
        reassemble_factors=[4, 2, 1, 0.5],
        head_hidden_size=32,
        head_in_index=-1,
        depth_estimation_type="metric" if metric else "relative",
        # transformers 5 types max_depth as int; whole metres (20, 80) are what V2 uses.
        max_depth=_whole(max_depth_m) if metric else 1,
    )


def _whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _head_renames() -> dict[str, str]:
    """Original ``depth_head.*`` name -> transformers name (neck and head)."""
    r: dict[str, str] = {}
    for i in range(4):
        for kind in ("weight", "bias"):
            r[f"depth_head.projects.{i}.{kind}"] = (
                f"neck.reassemble_stage.layers.{i}.projection.{kind}"
            )
            if i != 2:
                r[f"depth_head.resize_layers.{i}.{kind}"] = (
                    f"neck.reassemble_stage.layers.{i}.resize.{kind}"
                )
        r[f"depth_head.scratch.layer{i + 1}_rn.weight"] = f"neck.convs.{i}.weight"
    # The original refinenets run deepest first; transformers numbers the fusion layers the
    # other way round.
    for i, j in {1: 3, 2: 2, 3: 1, 4: 0}.items():
        src = f"depth_head.scratch.refinenet{i}"
        dst = f"neck.fusion_stage.layers.{j}"
        for kind in ("weight", "bias"):
            r[f"{src}.out_conv.{kind}"] = f"{dst}.projection.{kind}"
            for unit in (1, 2):
                for conv in (1, 2):
                    r[f"{src}.resConfUnit{unit}.conv{conv}.{kind}"] = (
                        f"{dst}.residual_layer{unit}.convolution{conv}.{kind}"
                    )
    for kind in ("weight", "bias"):
        r[f"depth_head.scratch.output_conv1.{kind}"] = f"head.conv1.{kind}"
        r[f"depth_head.scratch.output_conv2.0.{kind}"] = f"head.conv2.{kind}"
        r[f"depth_head.scratch.output_conv2.2.{kind}"] = f"head.conv3.{kind}"
    return r


def depth_original_to_hf(state: dict[str, Any], target_keys: set[str]) -> dict[str, Any]:
    """Map an original Depth Anything V2 state dict to transformers names."""
    from cvgl_ros.models.backbone import dinov2_original_to_hf

    heads = _head_renames()
    backbone = {
        k[len("pretrained.") :]: v for k, v in state.items() if k.startswith("pretrained.")
    }
    out = dinov2_original_to_hf(backbone, target_keys, prefix="backbone.")
    for key, value in state.items():
        if key.startswith("pretrained."):
            continue
        if key not in heads:
            raise WeightsError(f"unexpected key {key!r} in original Depth Anything weights")
        out[heads[key]] = value
    return out


def depth_hf_to_original(state: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`depth_original_to_hf` (writes checkpoints in the original form)."""
    from cvgl_ros.models.backbone import dinov2_hf_to_original

    inverse = {v: k for k, v in _head_renames().items()}
    out = {f"pretrained.{k}": v for k, v in dinov2_hf_to_original(state, "backbone.").items()}
    for key, value in state.items():
        if key.startswith("backbone."):
            continue
        if key not in inverse:
            raise WeightsError(f"unexpected transformers Depth Anything key {key!r}")
        out[inverse[key]] = value
    return out


def depth_variant_from_original(state: dict[str, Any]) -> str:
    """``small`` / ``base`` / ``large`` from an original state dict's backbone width.

    Raises:
        WeightsError: no ``pretrained.cls_token`` or a width no V2 variant has.
    """
    from cvgl_ros.models.checkpoint import BACKBONE_SPECS

    token = state.get("pretrained.cls_token")
    if token is None:
        raise WeightsError("not Depth Anything weights: no 'pretrained.cls_token'")
    width = int(token.shape[-1])
    for name, spec in DEPTH_SPECS.items():
        if BACKBONE_SPECS[spec.backbone_id].hidden_size == width:
            return name
    raise WeightsError(f"no Depth Anything V2 variant has backbone width {width}")


def load_depth_anything(
    path: str | Path | None,
    variant: str = "small",
    metric: bool = False,
    max_depth_m: float = 80.0,
    **random_kwargs: Any,
) -> Any:
    """Load ``DepthAnythingForDepthEstimation`` from local weights (or random when ``path`` is
    None: tests and benchmarks only).

    Raises:
        WeightsError: missing file, unreadable weights, or weights of another architecture.
    """
    from cvgl_ros.models.backbone import _load_strict, is_hf_dinov2, load_state_file, transformers

    if path is None or str(path) == "":
        model = transformers.DepthAnythingForDepthEstimation(
            depth_anything_config(variant, metric, max_depth_m, **random_kwargs)
        )
    else:
        p = Path(path)
        if p.is_dir():
            if not (p / "config.json").is_file():
                raise WeightsError(f"{p} is a directory without config.json (not a HF model dir)")
            try:
                model = transformers.DepthAnythingForDepthEstimation.from_pretrained(
                    str(p), local_files_only=True
                )
            except Exception as exc:  # transformers raises OSError / ValueError / KeyError
                raise WeightsError(f"cannot load Depth Anything from {p}: {exc}") from exc
            kind = model.config.depth_estimation_type
            if (kind == "metric") != metric:
                raise WeightsError(f"{p} is a {kind} model but metric={metric} was configured")
        elif p.is_file():
            state = load_state_file(p)
            if is_hf_dinov2(state, "backbone."):  # a lone HF model.safetensors
                state = depth_hf_to_original(state)
            found = depth_variant_from_original(state)
            if found != variant:
                raise WeightsError(
                    f"{p} holds Depth Anything V2 {found.title()}, but variant {variant!r} is "
                    f"configured (set depth.model.variant: {found})"
                )
            model = transformers.DepthAnythingForDepthEstimation(
                depth_anything_config(variant, metric, max_depth_m, **random_kwargs)
            )
            mapped = depth_original_to_hf(state, set(model.state_dict()))
            _load_strict(model, mapped, p)
        else:
            raise WeightsError(f"Depth Anything weights not found at {p} (nothing is downloaded)")
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def build_depth_network(model: Any) -> Any:
    """Wrap a ``DepthAnythingForDepthEstimation``: images (B, 3, H, W) float32 RGB in [0, 1]
    -> depth (B, H, W) float32 (disparity for relative models, metres for metric ones)."""
    from cvgl_ros.models.backbone import IMAGENET_MEAN, IMAGENET_STD, torch

    class DepthNetwork(torch.nn.Module):  # type: ignore[misc]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.model = inner
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

        def forward(self, images: Any) -> Any:
            x = (images - self.mean) / self.std
            return self.model(pixel_values=x).predicted_depth

    return DepthNetwork(model).eval()


def _bilinear(image: np.ndarray, pixels_px: np.ndarray) -> FloatArray:
    """Sample (H, W) at (N, 2) (u, v) pixel-centre coordinates.

    NaN-aware: unknown (NaN) neighbours are left out and the remaining weights renormalised;
    the result is NaN outside the image or when the known neighbours carry less than half of
    the interpolation weight.
    """
    h, w = image.shape
    u, v = pixels_px[:, 0], pixels_px[:, 1]
    out = np.full(len(u), np.nan)
    inside = (u >= -0.5) & (u <= w - 0.5) & (v >= -0.5) & (v <= h - 0.5) & np.isfinite(u + v)
    uu = np.clip(u[inside], 0.0, w - 1.0)
    vv = np.clip(v[inside], 0.0, h - 1.0)
    u0 = np.floor(uu).astype(np.int64)
    v0 = np.floor(vv).astype(np.int64)
    u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
    fu, fv = uu - u0, vv - v0
    total = np.zeros(len(uu))
    weight = np.zeros(len(uu))
    for vi, ui, wt in (
        (v0, u0, (1 - fu) * (1 - fv)),
        (v0, u1, fu * (1 - fv)),
        (v1, u0, (1 - fu) * fv),
        (v1, u1, fu * fv),
    ):
        val = image[vi, ui]
        known = np.isfinite(val)
        total += np.where(known, val, 0.0) * wt
        weight += np.where(known, wt, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[inside] = np.where(weight >= 0.5, total / weight, np.nan)
    return out


class DepthAnythingDepth:
    """Depth Anything V2 depth provider (relative or metric).

    The network runs once per distinct image, at ``input_size_px``; :meth:`depth_at` converts
    the low-resolution output to depth and samples it only at the requested pixels (bilinear,
    through the same resize mapping as OpenCV's), so nothing is computed at the camera's full
    resolution on the per-frame path. :meth:`depth_map` gives the dense map (tools, overlays).

    Args:
        backend: runs images (1, 3, H, W) -> depth (1, H, W).
        config: model configuration (input size, metric flag).
    """

    def __init__(self, backend: InferenceBackend, config: DepthModelConfig | None = None) -> None:
        self.config = config or DepthModelConfig()
        self._backend = backend
        h, w = self.config.input_size_px
        self.input_size_px = (max(14, round(h / 14) * 14), max(14, round(w / 14) * 14))
        h, w = self.input_size_px
        check_image_input_size(
            backend,
            self.input_size_px,
            "depth images (depth.model.input_size_px)",
            f"export it for this size (cvgl-ros export --model depth --height {h} --width {w} "
            f"--out {getattr(backend, 'path', 'FILE.onnx')}; rebuild a TensorRT engine from "
            "it) or set depth.model.input_size_px to the file's size",
        )
        self._last_key: tuple[object, ...] | None = None
        self._last_depth: np.ndarray | None = None
        self.runs = 0

    @property
    def relative(self) -> bool:
        """True for the relative models (arbitrary scale: no camera height from them)."""
        return not self.config.metric

    @property
    def metric_scale_sigma(self) -> float | None:
        """Relative 1-sigma scale error of the metric models (None for relative ones): the
        localizer bounds the similarity scale by it (Depth Anything V2 metric outdoor models
        report an AbsRel of 0.1-0.2 on their benchmarks; 0.25 leaves room for a camera and
        scene unlike their training data)."""
        return METRIC_SCALE_SIGMA if self.config.metric else None

    @classmethod
    def from_config(cls, config: DepthModelConfig) -> DepthAnythingDepth:
        """Open the configured backend (torch: load ``weights_path``).

        ``backend="auto"`` uses ONNX Runtime (TensorRT on CUDA) when ``engine_path`` names an
        existing ``.onnx`` (``.engine``) file, else torch.

        Raises:
            WeightsError: the torch backend without ``weights_path`` (a random network gives
                meaningless depth; :meth:`with_random_weights` is the explicit test-only way),
                or unreadable weights.
            BackendError: a configured ``engine_path`` that does not exist.
        """
        return cls._open(config, random_weights=False)

    @classmethod
    def with_random_weights(
        cls, config: DepthModelConfig, **random_kwargs: Any
    ) -> DepthAnythingDepth:
        """A randomly initialised network of the configured architecture on the torch backend:
        tests and benchmarks only (its depth is meaningless). ``config.weights_path`` and the
        backend choice are ignored.

        Args:
            config: input size, variant, metric flag, device, threads.
            **random_kwargs: :func:`depth_anything_config` options (``num_layers``).
        """
        return cls._open(config, random_weights=True, **random_kwargs)

    @classmethod
    def _open(
        cls, config: DepthModelConfig, random_weights: bool, **random_kwargs: Any
    ) -> DepthAnythingDepth:
        from cvgl_ros.models.paths import resolve_model_path

        # Relative paths resolve against the model directory, never the working directory.
        engine = (
            resolve_model_path(config.engine_path, "depth.model.engine_path")
            if config.engine_path
            else None
        )
        weights = (
            resolve_model_path(config.weights_path, "depth.model.weights_path")
            if config.weights_path
            else None
        )
        if config.backend == "auto" and engine is not None and not engine.is_file():
            # A configured but missing file must not silently become torch (random weights
            # when weights_path is empty).
            raise BackendError(
                f"depth engine_path {engine} not found (create it with: cvgl-ros export "
                f"--model depth --out {engine} ...)"
            )
        kind = (
            "torch"
            if random_weights
            else resolve_backend_kind(
                config.backend,
                config.device,
                onnx_paths=[engine] if engine is not None and engine.suffix == ".onnx" else [],
                engine_paths=[engine] if engine is not None and engine.suffix == ".engine" else [],
            )
        )
        if kind == "torch":
            if config.int8:
                LOGGER.warning("depth.model.int8 ignored: no ONNX engine_path (torch backend)")
            if random_weights:
                LOGGER.warning("Depth Anything with RANDOM weights: tests and benchmarks only")
            elif weights is None:
                raise WeightsError(
                    "depth.model.weights_path is required for the torch backend (a Hugging "
                    "Face Depth Anything V2 directory or depth_anything_v2_vits.pth, see "
                    "docs/MODELS.md); or export the depth network to ONNX and set "
                    "depth.model.engine_path (cvgl-ros export --model depth). Refusing to run "
                    "randomly initialised weights."
                )
            model = load_depth_anything(
                None if random_weights else weights,
                config.variant,
                config.metric,
                config.max_depth_m,
                **random_kwargs,
            )
            backend = open_backend(
                "torch",
                build_depth_network(model),
                device=config.device,
                fp16=config.fp16,
                num_threads=config.num_threads,
                input_names=(DEPTH_INPUT,),
                output_names=(DEPTH_OUTPUT,),
            )
        else:
            backend = open_backend(
                kind,
                engine,
                device=config.device,
                num_threads=config.num_threads,
                int8=config.int8 and kind == "onnxruntime",
            )
        return cls(backend, config)

    def _network_depth(self, image: UInt8Array) -> np.ndarray:
        """Depth at the network's resolution, (h_in, w_in) float32, NaN where unknown; the
        network runs only when ``image`` differs from the previous call's."""
        from cvgl_ros.models.preprocess import prepare_image

        img = np.asarray(image)
        digest = hashlib.blake2b(np.ascontiguousarray(img).data, digest_size=16).hexdigest()
        key = (img.shape, img.dtype.str, digest)
        if key == self._last_key and self._last_depth is not None:
            return self._last_depth
        x = prepare_image(img, self.input_size_px)
        name = self._backend.input_names[0]
        raw = self._backend.run({name: x})[self._backend.output_names[0]]
        self.runs += 1
        out = np.array(raw, dtype=np.float32).reshape(raw.shape[-2], raw.shape[-1])
        if self.config.metric:
            out[~(out > 0.0)] = np.nan
        else:
            finite = out[np.isfinite(out)]
            floor = MIN_RELATIVE_DISPARITY * max(float(finite.max(initial=0.0)), 1e-12)
            with np.errstate(divide="ignore", invalid="ignore"):
                out = np.where(out > floor, np.float32(1.0) / out, np.float32(np.nan))
        out.setflags(write=False)
        self._last_key, self._last_depth = key, out
        return out

    def _sample(self, image: UInt8Array, pixels_px: np.ndarray) -> FloatArray:
        """Depth at (N, 2) pixels of ``image`` (u, v; pixel centres at integers)."""
        img = np.asarray(image)
        net = self._network_depth(img)
        h_in, w_in = net.shape
        h, w = img.shape[0], img.shape[1]
        # Image pixel centre u -> network-output coordinate, as cv2.resize maps them.
        scale = np.array([w_in / w, h_in / h])
        return _bilinear(net, (pixels_px + 0.5) * scale - 0.5)

    def depth_map(self, image: UInt8Array) -> FloatArray:
        """Dense depth of an image at its own resolution (for tools; the per-frame path samples
        only the matched pixels).

        Args:
            image: (H, W, 3) uint8 RGB (or (H, W) mono).

        Returns:
            (H, W) float64: metres (metric models) or a depth proportional to 1 / disparity
            (relative models); NaN where the depth is unknown (sky / at infinity).
        """
        img = np.asarray(image)
        h, w = img.shape[0], img.shape[1]
        vv, uu = np.mgrid[0:h, 0:w]
        pixels = np.stack([uu.ravel(), vv.ravel()], axis=1).astype(np.float64)
        return self._sample(img, pixels).reshape(h, w)

    def depth_at(
        self,
        ground_image: UInt8Array,
        camera: CameraModel,
        pixels_px: FloatArray,
        gravity_from_camera: FloatArray,
    ) -> FloatArray:
        """Depth of each pixel (see :class:`cvgl_ros.core.interfaces.DepthProvider`).

        Returns:
            (N,) float64: metres (metric) or relative depth; NaN outside the image or where the
            model sees no finite depth.
        """
        del camera, gravity_from_camera  # the network needs neither
        pts = np.asarray(pixels_px, dtype=np.float64).reshape(-1, 2)
        return self._sample(ground_image, pts)

    @property
    def last_latency_s(self) -> float:
        """Network time of the last network run, seconds."""
        return float(self._backend.last_latency_s)

    @property
    def backend(self) -> InferenceBackend:
        """The backend running the network (which runtime: tools, benchmarks)."""
        return self._backend

    def forget_last_image(self) -> None:
        """Drop the kept depth of the previous image: the next call runs the network even
        for the same image (benchmarks timing one frame after another)."""
        self._last_key = None
        self._last_depth = None

    def close(self) -> None:
        """Close the backend."""
        self._backend.close()
