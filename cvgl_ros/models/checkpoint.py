"""Matcher checkpoint format: ``NAME.safetensors`` (weights) + ``NAME.json`` (configuration).

The training tool writes checkpoints with :func:`save_matcher_checkpoint`; the runtime reads
them with :func:`load_matcher_checkpoint`. No torch is needed to read one (safetensors'
numpy API), so the ONNX Runtime / TensorRT paths work without torch installed.

Tensors (float32):

- ``head.*``: :class:`cvgl_ros.models.head.ProjectionHead` state dict;
- ``matcher.log_temperature``, ``matcher.dustbin``: the dual-softmax scalars.

The frozen DINOv2 backbone is not stored; the JSON names it (``backbone_id``) and the user
supplies its weights separately. The JSON is also embedded in the safetensors metadata under
``cvgl_matcher_config`` so a lone ``.safetensors`` file still loads.

JSON (version 1)::

    {"format": "cvgl_ros.matcher", "version": 1, "backbone_id": "dinov2_vits14",
     "head": {"in_dim": 384, "hidden_dim": 256, "out_dim": 128, "num_conv_layers": 2,
              "num_heads": 4},
     "matcher": {"temperature": 0.1, "dustbin_score": 1.0},
     "ground_size_px": [224, 224], "aerial_size_px": [518, 518], "metadata": {...}}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.models.errors import CheckpointError, require

FORMAT_NAME = "cvgl_ros.matcher"
# safetensors has no rosdep key (rosdistro's python.yaml): robots install it with pip. Every
# learned backend reads the matcher checkpoint through it, so it is in the torch, onnx and
# tensorrt extras.
SAFETENSORS_PIP = "safetensors>=0.4"
FORMAT_VERSION = 1
METADATA_KEY = "cvgl_matcher_config"
PATCH_SIZE_PX = 14


@dataclass(frozen=True)
class VitSpec:
    """Architecture of one DINOv2 ViT/14 (MLP ratio 4, LayerScale, trained at 518 px).

    Attributes:
        hidden_size: token width.
        num_layers: transformer blocks.
        num_heads: attention heads.
        num_registers: register tokens (the ``*_reg`` models of "Vision Transformers Need
            Registers"; 0 for the original release).
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    num_registers: int = 0


# Backbone ids used in configs and checkpoints (torch hub names, ``_reg`` = ``*_reg4``).
# ViT-g/14 (SwiGLU MLP, width 1536) is not supported.
BACKBONE_SPECS: dict[str, VitSpec] = {
    "dinov2_vits14": VitSpec(384, 12, 6),
    "dinov2_vitb14": VitSpec(768, 12, 12),
    "dinov2_vitl14": VitSpec(1024, 24, 16),
    "dinov2_vits14_reg": VitSpec(384, 12, 6, 4),
    "dinov2_vitb14_reg": VitSpec(768, 12, 12, 4),
    "dinov2_vitl14_reg": VitSpec(1024, 24, 16, 4),
}
_BACKBONE_IDS = tuple(BACKBONE_SPECS)


@dataclass(frozen=True)
class HeadConfig:
    """Architecture of :class:`cvgl_ros.models.head.ProjectionHead`.

    Attributes:
        in_dim: token width of the backbone (384 ViT-S, 768 ViT-B, 1024 ViT-L).
        hidden_dim: channels of the convolutions and the attention layer.
        out_dim: descriptor width.
        num_conv_layers: 3x3 convolutions before the attention layer (>= 1).
        num_heads: attention heads (must divide ``hidden_dim``).
    """

    in_dim: int = 384
    hidden_dim: int = 256
    out_dim: int = 128
    num_conv_layers: int = 2
    num_heads: int = 4

    def __post_init__(self) -> None:
        for name in ("in_dim", "hidden_dim", "out_dim", "num_conv_layers", "num_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must divide hidden_dim ({self.hidden_dim})"
            )


def head_tensor_shapes(config: HeadConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every checkpoint tensor for ``config`` (``head.*`` as
    :class:`cvgl_ros.models.head.ProjectionHead` names them, and the ``matcher.*`` scalars);
    torch-free, for checking a checkpoint before loading it."""
    shapes: dict[str, tuple[int, ...]] = {}
    in_ch, h = config.in_dim, config.hidden_dim
    for i in range(config.num_conv_layers):
        shapes[f"head.convs.{2 * i}.weight"] = (h, in_ch, 3, 3)
        shapes[f"head.convs.{2 * i}.bias"] = (h,)
        in_ch = h
    for name in ("attn_norm", "out_norm"):
        shapes[f"head.{name}.weight"] = (h,)
        shapes[f"head.{name}.bias"] = (h,)
    shapes["head.qkv.weight"] = (3 * h, h)
    shapes["head.qkv.bias"] = (3 * h,)
    shapes["head.attn_out.weight"] = (h, h)
    shapes["head.attn_out.bias"] = (h,)
    shapes["head.proj.weight"] = (config.out_dim, h)
    shapes["head.proj.bias"] = (config.out_dim,)
    shapes["matcher.log_temperature"] = ()
    shapes["matcher.dustbin"] = ()
    return shapes


@dataclass(frozen=True)
class DualSoftmaxConfig:
    """Initial values of the dual-softmax matcher's learnable scalars.

    Attributes:
        temperature: softmax temperature applied to cosine similarities (> 0).
        dustbin_score: initial dustbin logit (in similarity / temperature units).
    """

    temperature: float = 0.1
    dustbin_score: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0.0):
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not math.isfinite(self.dustbin_score):
            raise ValueError(f"dustbin_score must be finite, got {self.dustbin_score}")


def _size(name: str, value: Any) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be (height_px, width_px), got {value!r}") from exc
    if h < 14 or w < 14 or h % 14 or w % 14:
        raise ValueError(f"{name} must be multiples of 14 (>= 14), got {(h, w)}")
    return h, w


@dataclass(frozen=True)
class MatcherCheckpointConfig:
    """Configuration stored beside the matcher weights.

    Attributes:
        backbone_id: ``dinov2_vit{s,b,l}14`` the head was trained on.
        head: projection head architecture (``in_dim`` must equal the backbone width).
        matcher: dual-softmax initial scalars (the trained values are in the weights).
        ground_size_px: (height, width) network input for ground images, multiples of 14.
        aerial_size_px: (height, width) network input for aerial patches, multiples of 14.
        version: checkpoint format version.
        metadata: free-form JSON (training data, epoch, git revision, ...).
    """

    backbone_id: str = "dinov2_vits14"
    head: HeadConfig = field(default_factory=HeadConfig)
    matcher: DualSoftmaxConfig = field(default_factory=DualSoftmaxConfig)
    ground_size_px: tuple[int, int] = (224, 224)
    aerial_size_px: tuple[int, int] = (518, 518)
    version: int = FORMAT_VERSION
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backbone_id not in _BACKBONE_IDS:
            raise ValueError(
                f"backbone_id must be one of {_BACKBONE_IDS}, got {self.backbone_id!r}"
            )
        width = BACKBONE_SPECS[self.backbone_id].hidden_size
        if self.head.in_dim != width:
            raise ValueError(
                f"head.in_dim ({self.head.in_dim}) must equal the width of {self.backbone_id} "
                f"({width})"
            )
        object.__setattr__(self, "ground_size_px", _size("ground_size_px", self.ground_size_px))
        object.__setattr__(self, "aerial_size_px", _size("aerial_size_px", self.aerial_size_px))
        if not 1 <= self.version <= FORMAT_VERSION:
            raise ValueError(
                f"version {self.version} is not supported "
                f"(this cvgl_ros reads 1..{FORMAT_VERSION})"
            )

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object written beside the weights."""
        return {
            "format": FORMAT_NAME,
            "version": self.version,
            "backbone_id": self.backbone_id,
            "head": asdict(self.head),
            "matcher": asdict(self.matcher),
            "ground_size_px": list(self.ground_size_px),
            "aerial_size_px": list(self.aerial_size_px),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> MatcherCheckpointConfig:
        """Parse the JSON object; unknown keys are an error.

        Raises:
            CheckpointError: wrong format name, unsupported version, unknown or bad fields.
        """
        if data.get("format") != FORMAT_NAME:
            raise CheckpointError(
                f"not a cvgl_ros matcher checkpoint (format={data.get('format')!r})"
            )
        known = {"format", "version", "backbone_id", "head", "matcher", "ground_size_px"}
        known |= {"aerial_size_px", "metadata"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"unknown checkpoint config keys {unknown}")
        try:
            return cls(
                backbone_id=str(data["backbone_id"]),
                head=HeadConfig(**data["head"]),
                matcher=DualSoftmaxConfig(**data.get("matcher", {})),
                ground_size_px=tuple(data["ground_size_px"]),
                aerial_size_px=tuple(data["aerial_size_px"]),
                version=int(data["version"]),
                metadata=dict(data.get("metadata", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"bad matcher checkpoint config: {exc}") from exc


@dataclass(frozen=True)
class MatcherCheckpoint:
    """A loaded checkpoint: configuration + float32 numpy tensors by name."""

    config: MatcherCheckpointConfig
    tensors: dict[str, np.ndarray]

    def head_state(self) -> dict[str, np.ndarray]:
        """``head.*`` tensors with the prefix removed (a ProjectionHead state dict)."""
        return {k[5:]: v for k, v in self.tensors.items() if k.startswith("head.")}

    @property
    def temperature(self) -> float:
        """Trained similarity temperature."""
        return float(np.exp(np.asarray(self.tensors["matcher.log_temperature"]).reshape(-1)[0]))

    @property
    def dustbin_score(self) -> float:
        """Trained dustbin logit."""
        return float(np.asarray(self.tensors["matcher.dustbin"]).reshape(-1)[0])


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, json) paths of a checkpoint: a directory, ``.safetensors`` or ``.json``."""
    p = Path(path)
    if p.is_dir():
        return p / "matcher.safetensors", p / "matcher.json"
    if p.suffix in (".safetensors", ".json"):
        return p.with_suffix(".safetensors"), p.with_suffix(".json")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy()
    return np.array(value, dtype=np.float32, order="C")  # keeps 0-d scalars 0-d


def save_matcher_checkpoint(
    path: str | Path, config: MatcherCheckpointConfig, tensors: Mapping[str, Any]
) -> tuple[Path, Path]:
    """Write a matcher checkpoint.

    Args:
        path: a directory (``matcher.safetensors`` + ``matcher.json`` inside), or a file path
            whose ``.safetensors`` / ``.json`` siblings are written.
        config: the checkpoint configuration.
        tensors: ``head.*`` and ``matcher.*`` tensors (torch tensors or numpy arrays), e.g.
            ``{**{"head." + k: v for k, v in head.state_dict().items()},
            **{"matcher." + k: v for k, v in matcher.state_dict().items()}}``.

    Returns:
        (weights path, json path).

    Raises:
        CheckpointError: missing matcher scalars or tensors outside ``head.`` / ``matcher.``.
    """
    st_numpy = require("safetensors.numpy", "onnx", "writing matcher checkpoints", SAFETENSORS_PIP)
    arrays = {k: _to_numpy(v) for k, v in tensors.items()}
    bad = sorted(k for k in arrays if not k.startswith(("head.", "matcher.")))
    if bad:
        raise CheckpointError(f"checkpoint tensors must start with 'head.' or 'matcher.': {bad}")
    for required in ("matcher.log_temperature", "matcher.dustbin"):
        if required not in arrays:
            raise CheckpointError(f"checkpoint needs tensor {required!r}")
    weights_path, json_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config.to_json_dict(), indent=2, sort_keys=True)
    st_numpy.save_file(arrays, str(weights_path), metadata={METADATA_KEY: text})
    json_path.write_text(text + "\n")
    return weights_path, json_path


def load_matcher_checkpoint(path: str | Path) -> MatcherCheckpoint:
    """Read a matcher checkpoint written by :func:`save_matcher_checkpoint`.

    The JSON file wins over the embedded metadata when both exist.

    Raises:
        CheckpointError: missing files, unreadable weights, bad or unsupported config.
    """
    st_numpy = require("safetensors.numpy", "onnx", "reading matcher checkpoints", SAFETENSORS_PIP)
    weights_path, json_path = checkpoint_paths(path)
    if not weights_path.is_file():
        raise CheckpointError(f"matcher weights not found: {weights_path}")
    try:
        tensors = dict(st_numpy.load_file(str(weights_path)))
        from safetensors import safe_open

        with safe_open(str(weights_path), framework="numpy") as fh:
            embedded = (fh.metadata() or {}).get(METADATA_KEY)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {weights_path}: {exc}") from exc
    if json_path.is_file():
        text = json_path.read_text()
    elif embedded:
        text = embedded
    else:
        raise CheckpointError(f"no config: {json_path} is missing and {weights_path} embeds none")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint config is not valid JSON: {exc}") from exc
    config = MatcherCheckpointConfig.from_json_dict(data)
    for required in ("matcher.log_temperature", "matcher.dustbin"):
        if required not in tensors:
            raise CheckpointError(f"{weights_path} lacks tensor {required!r}")
    return MatcherCheckpoint(config=config, tensors={k: np.asarray(v) for k, v in tensors.items()})
