"""The training configuration: frozen dataclasses read from YAML, unknown keys are an error.

Example (``cvgl_ros/training/configs/synthetic_small.yaml``)::

    output_dir: runs/synthetic_small
    model: {backbone_id: dinov2_vits14, backbone_weights: "", ground_size_px: [112, 112]}
    train_data: {kind: synthetic, synthetic: {orthophotos: [a.tif], num_samples: 64}}
    val_data: {kind: synthetic, synthetic: {orthophotos: [a.tif], num_samples: 16, seed: 1}}
    optim: {epochs: 10, batch_size: 8, lr: 3.0e-4}

See ``docs/TRAINING.md`` for every key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cvgl_ros.models.checkpoint import DualSoftmaxConfig, HeadConfig
from cvgl_ros.models.config import DepthConfig
from cvgl_ros.training.datasets import KITTI_M_PER_PX, VIGOR_SPLITS, SyntheticConfig

DATA_KINDS = ("synthetic", "vigor", "kitti")
DEPTH_SOURCES = ("dataset", "ground_plane", "constant_range", "model")


class ConfigError(ValueError):
    """The training configuration is malformed (unknown key, bad value, missing file)."""


@dataclass(frozen=True)
class VigorConfig:
    """VIGOR reader settings (see :class:`cvgl_ros.training.datasets.VigorDataset`)."""

    root: str = ""
    split: str = "same_area_train"
    cities: tuple[str, ...] | None = None
    label_root: str = "splits__corrected"
    semi_positives: bool = False
    random_orientation: bool = True
    depth_dir: str = ""

    def __post_init__(self) -> None:
        if not self.root:
            raise ValueError("vigor.root is required")
        if self.split not in VIGOR_SPLITS:
            raise ValueError(f"vigor.split must be one of {VIGOR_SPLITS}, got {self.split!r}")


@dataclass(frozen=True)
class KittiConfig:
    """KITTI reader settings (see :class:`cvgl_ros.training.datasets.KittiDataset`)."""

    root: str = ""
    file_list: str = "train_files.txt"
    aerial_m_per_px: float = KITTI_M_PER_PX
    aerial_crop_px: int | None = None
    depth_dir: str = ""

    def __post_init__(self) -> None:
        if not self.root:
            raise ValueError("kitti.root is required")
        if not self.aerial_m_per_px > 0.0:
            raise ValueError(f"kitti.aerial_m_per_px must be > 0, got {self.aerial_m_per_px}")


@dataclass(frozen=True)
class DataConfig:
    """One data split.

    Attributes:
        kind: ``"synthetic"``, ``"vigor"`` or ``"kitti"``; the matching sub-section is used.
        synthetic: settings of the synthetic renderer.
        vigor: settings of the VIGOR reader.
        kitti: settings of the KITTI reader.
        depth_source: ``"dataset"`` (the reader's depth: exact for synthetic, the precomputed
            ``depth_dir`` maps for VIGOR/KITTI) or a depth provider kind (``"ground_plane"``,
            ``"constant_range"``, ``"model"``: Depth Anything run once per sample, cached).
        depth: the depth provider configuration when ``depth_source`` is not ``"dataset"``
            (a relative Depth Anything model, ``depth.model.metric: false``, leaves the pose
            scale free and skips the infoNCE losses).
        max_samples: keep a reproducible random subset of this size.
        seed: seed of that subset and of per-sample draws (orientation, crops).
    """

    kind: str = "synthetic"
    synthetic: SyntheticConfig | None = None
    vigor: VigorConfig | None = None
    kitti: KittiConfig | None = None
    depth_source: str = "dataset"
    depth: DepthConfig = field(default_factory=DepthConfig)
    max_samples: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ValueError(f"kind must be one of {DATA_KINDS}, got {self.kind!r}")
        if getattr(self, self.kind) is None:
            raise ValueError(f"kind is {self.kind!r} but the '{self.kind}' section is missing")
        if self.depth_source not in DEPTH_SOURCES:
            raise ValueError(
                f"depth_source must be one of {DEPTH_SOURCES}, got {self.depth_source!r}"
            )
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {self.max_samples}")

    @property
    def provider_is_metric(self) -> bool:
        """Whether the configured depth provider gives metres (geometric ones always do)."""
        return self.depth_source != "model" or self.depth.model.metric


@dataclass(frozen=True)
class ModelConfig:
    """The frozen backbone and the trainable head.

    Attributes:
        backbone_id: ``dinov2_vit{s,b,l}14``.
        backbone_weights: local DINOv2 weights (HF directory or original ``.pth``). Empty means
            a randomly initialised backbone: only for tests and plumbing checks.
        backbone_num_layers: depth of a randomly initialised backbone (None = the real depth).
        head: projection head architecture (``in_dim`` = backbone width).
        matcher: initial temperature and dustbin logit.
        ground_size_px: (height, width) network input for ground images (multiples of 14).
        aerial_size_px: (height, width) network input for aerial patches (multiples of 14).
        init_checkpoint: start the head from this matcher checkpoint (fine-tuning).
    """

    backbone_id: str = "dinov2_vits14"
    backbone_weights: str = ""
    backbone_num_layers: int | None = None
    head: HeadConfig = field(default_factory=HeadConfig)
    matcher: DualSoftmaxConfig = field(default_factory=DualSoftmaxConfig)
    ground_size_px: tuple[int, int] = (224, 224)
    aerial_size_px: tuple[int, int] = (518, 518)
    init_checkpoint: str = ""

    def __post_init__(self) -> None:
        for name in ("ground_size_px", "aerial_size_px"):
            size = tuple(int(v) for v in getattr(self, name))
            if len(size) != 2 or min(size) < 14 or size[0] % 14 or size[1] % 14:
                raise ValueError(f"{name} must be (height, width), multiples of 14, got {size}")
            object.__setattr__(self, name, size)
        if self.backbone_num_layers is not None and self.backbone_num_layers < 1:
            raise ValueError(f"backbone_num_layers must be >= 1, got {self.backbone_num_layers}")


@dataclass(frozen=True)
class LossConfig:
    """Loss weights and geometry.

    Attributes:
        vce_weight: weight of the Virtual Correspondence Error (metres).
        nce_weight: weight of the two infoNCE losses (used only with metric depth).
        vce_extent_m: half side of the square of virtual points around the camera, metres.
        vce_points_per_side: virtual points per side of that square.
        positive_radius_cells: a ground cell's true projection counts as matching an aerial
            cell within this many aerial cell sizes.
        exclusion_radius_cells: aerial-to-ground infoNCE ignores ground cells whose true
            projection lies within this many aerial cell sizes (but not the positive).
    """

    vce_weight: float = 1.0
    nce_weight: float = 1.0
    vce_extent_m: float = 10.0
    vce_points_per_side: int = 5
    positive_radius_cells: float = 0.75
    exclusion_radius_cells: float = 2.0

    def __post_init__(self) -> None:
        for name in ("vce_weight", "nce_weight"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v >= 0.0):
                raise ValueError(f"{name} must be >= 0, got {v}")
        if self.vce_weight == 0.0 and self.nce_weight == 0.0:
            raise ValueError("vce_weight and nce_weight cannot both be 0")
        if not self.vce_extent_m > 0.0:
            raise ValueError(f"vce_extent_m must be > 0, got {self.vce_extent_m}")
        if self.vce_points_per_side < 2:
            raise ValueError(f"vce_points_per_side must be >= 2, got {self.vce_points_per_side}")
        if not self.positive_radius_cells > 0.0:
            raise ValueError("positive_radius_cells must be > 0")
        if self.exclusion_radius_cells < self.positive_radius_cells:
            raise ValueError("exclusion_radius_cells must be >= positive_radius_cells")


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation, sampling and validation settings.

    Attributes:
        epochs: passes over the training set.
        batch_size: pairs per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        grad_clip_norm: clip the gradient norm (0 disables).
        amp: bfloat16/float16 autocast on CUDA (ignored on CPU).
        num_correspondences: K pairs sampled per image for the differentiable Procrustes.
        sampling: ``"topk"`` or ``"multinomial"`` (see :mod:`cvgl_ros.training.sampling`).
        fit_scale: estimate the Procrustes scale (True) or fix it to 1 (metric depth).
        max_depth_m: lifted points farther than this are not used (as in the node).
        val_every_epochs: validate every N epochs (and after the last).
        val_top_k: correspondences offered to RANSAC in validation (as in the node).
        val_mutual: mutual-nearest filtering in validation (as in the node).
        num_workers: data-loader workers reading prepared samples from the cache.
        in_memory_mb: keep a split's prepared samples in memory when they take at most this
            much (else they are read from the cache per batch).
    """

    epochs: int = 20
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 1e-2
    grad_clip_norm: float = 1.0
    amp: bool = True
    num_correspondences: int = 256
    sampling: str = "topk"
    fit_scale: bool = True
    max_depth_m: float = 100.0
    val_every_epochs: int = 1
    val_top_k: int = 256
    val_mutual: bool = True
    num_workers: int = 0
    in_memory_mb: float = 2048.0

    def __post_init__(self) -> None:
        for name in (
            "epochs",
            "batch_size",
            "num_correspondences",
            "val_every_epochs",
            "val_top_k",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0.0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0.0 or self.grad_clip_norm < 0.0:
            raise ValueError("weight_decay and grad_clip_norm must be >= 0")
        if self.sampling not in ("topk", "multinomial"):
            raise ValueError(f"sampling must be 'topk' or 'multinomial', got {self.sampling!r}")
        if not self.max_depth_m > 0.0:
            raise ValueError(f"max_depth_m must be > 0, got {self.max_depth_m}")
        if self.in_memory_mb < 0.0:
            raise ValueError(f"in_memory_mb must be >= 0, got {self.in_memory_mb}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


@dataclass(frozen=True)
class TrainConfig:
    """The whole training run.

    Attributes:
        output_dir: run directory (checkpoints, ``log.csv``, ``best/`` matcher checkpoint).
        cache_dir: feature cache directory (default ``<output_dir>/cache``); reusable between
            runs with the same backbone, input sizes and data.
        seed: seed of torch, numpy and Python's ``random``.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        num_threads: CPU threads for torch.
        resume: continue from ``<output_dir>/last.pt`` when it exists.
        tensorboard: also write TensorBoard logs when ``tensorboard`` is installed.
        model: backbone and head.
        train_data: training split.
        val_data: validation split.
        loss: loss settings.
        optim: optimisation settings.
    """

    output_dir: str = "runs/train"
    cache_dir: str = ""
    seed: int = 0
    device: str = "auto"
    num_threads: int = 2
    resume: bool = True
    tensorboard: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    train_data: DataConfig | None = None
    val_data: DataConfig | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.train_data is None or self.val_data is None:
            raise ValueError("train_data and val_data are required")

    @property
    def cache_path(self) -> Path:
        """Directory of the feature cache."""
        return Path(self.cache_dir) if self.cache_dir else Path(self.output_dir) / "cache"


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Convert a YAML value to the annotated field type (dataclasses, tuples, optionals)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, where)
    if dataclasses.is_dataclass(tp):
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        return build_dataclass(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__}")
        item_args = typing.get_args(tp)
        inner = item_args[0] if item_args else Any
        return tuple(_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where} must be {tp.__name__}, got {value!r}")
    return value


def build_dataclass(cls: Any, data: Mapping[str, Any], where: str = "") -> Any:
    """Build a frozen dataclass from a mapping; unknown keys raise :class:`ConfigError`.

    Raises:
        ConfigError: unknown key, wrong type or a value the dataclass rejects (the message
            names the field's path).
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in {where or cls.__name__}; allowed: {sorted(names)}"
        )
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def load_train_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a training YAML file.

    Relative paths in the file (output/cache dirs, dataset roots, orthophotos, weights) are
    taken relative to the current directory, as a user typing them would expect.

    Args:
        path: the YAML file.
        overrides: top-level keys replacing the file's (e.g. from the command line).

    Raises:
        ConfigError: unreadable YAML, unknown keys or invalid values.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"training config not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: the top level must be a mapping")
    merged = dict(data)
    if overrides:
        merged.update(overrides)
    cfg: TrainConfig = build_dataclass(TrainConfig, merged)
    return cfg
