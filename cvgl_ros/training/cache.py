"""Prepared samples and their on-disk cache: frozen-backbone features + cell geometry + depth.

The backbone is frozen, so its tokens for a sample never change: they are computed once, stored
(float16) together with the sample's cell geometry (lifted ground points, metric aerial points,
ground truth) and read back in later epochs and runs. Depth from a depth *model* is computed in
the same pass, so it too runs once per sample. The cache key covers everything the entry
depends on (backbone id and weights file, input sizes, depth source, max depth, sample id), so a
changed setting never reads a stale entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvgl_ros.core.interfaces import DepthProvider
from cvgl_ros.core.types import FloatArray
from cvgl_ros.models.backbone import DinoBackbone, dinov2_config, load_dinov2
from cvgl_ros.models.preprocess import prepare_image
from cvgl_ros.training.datasets import DatasetError, PairDataset, TrainingSample
from cvgl_ros.training.geometry import (
    aerial_cell_points_m,
    aerial_cell_valid,
    cell_centers_px,
    lift_cells,
)

LOGGER = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass(frozen=True)
class PreparedSample:
    """Everything a training step needs for one pair (no images).

    Attributes:
        sample_id: the dataset's id.
        ground_tokens: (hg, wg, C) float16 backbone tokens of the ground image.
        aerial_tokens: (ha, wa, C) float16 backbone tokens of the aerial patch.
        ground_points_m: (hg*wg, 2) float32 lifted cell points, gravity-aligned body frame.
        ground_valid: (hg*wg,) bool.
        aerial_points_m: (ha*wa, 2) float32 (east, north) of the aerial cells, metres.
        aerial_valid: (ha*wa,) bool, aerial cells with imagery.
        camera_en_m: (2,) float32 ground-truth camera position in the patch frame, metres.
        yaw_enu_rad: ground-truth yaw, radians.
        scale: ground-truth Procrustes scale (1 for metric depth, NaN when unknown).
        aerial_cell_m: side of one aerial feature cell, metres (the matches' resolution).
    """

    sample_id: str
    ground_tokens: torch.Tensor
    aerial_tokens: torch.Tensor
    ground_points_m: torch.Tensor
    ground_valid: torch.Tensor
    aerial_points_m: torch.Tensor
    aerial_valid: torch.Tensor
    camera_en_m: torch.Tensor
    yaw_enu_rad: float
    scale: float
    aerial_cell_m: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``torch.save``."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreparedSample:
        """Inverse of :meth:`to_dict`."""
        return cls(**{f: data[f] for f in cls.__dataclass_fields__})


class FeatureExtractor:
    """The frozen DINOv2 backbone applied at fixed ground and aerial input sizes.

    Args:
        backbone_id: ``dinov2_vit{s,b,l}14``.
        weights_path: local weights; empty gives a randomly initialised backbone (tests).
        ground_size_px: (height, width) ground network input.
        aerial_size_px: (height, width) aerial network input.
        device: torch device.
        num_layers: depth of a randomly initialised backbone (None = the real depth).
        fp16: run the backbone in half precision (CUDA).
        seed: initialisation seed of a random backbone (the same seed gives the same network).
    """

    def __init__(
        self,
        backbone_id: str,
        weights_path: str,
        ground_size_px: tuple[int, int],
        aerial_size_px: tuple[int, int],
        device: torch.device,
        num_layers: int | None = None,
        fp16: bool = False,
        seed: int = 0,
    ) -> None:
        if weights_path:
            model = load_dinov2(weights_path, backbone_id)
            identity = _file_identity(Path(weights_path))
        else:
            LOGGER.warning(
                "no backbone weights given: using a RANDOMLY INITIALISED %s "
                "(for tests only; results say nothing about real accuracy)",
                backbone_id,
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                import transformers

                model = transformers.Dinov2Model(dinov2_config(backbone_id, num_layers=num_layers))
            model.eval()  # type: ignore[no-untyped-call]  # transformers is untyped here
            for p in model.parameters():
                p.requires_grad_(False)
            identity = f"random:{seed}:{num_layers}"
        self.backbone = DinoBackbone(model).to(device).eval()
        self.device = device
        self.fp16 = bool(fp16 and device.type == "cuda")
        if self.fp16:
            self.backbone.half()
        self.backbone_id = backbone_id
        self.ground_size_px = (int(ground_size_px[0]), int(ground_size_px[1]))
        self.aerial_size_px = (int(aerial_size_px[0]), int(aerial_size_px[1]))
        self.identity = f"{backbone_id}|{identity}"

    @property
    def hidden_size(self) -> int:
        """Token width C."""
        return int(self.backbone.hidden_size)

    @torch.no_grad()
    def tokens(self, image: np.ndarray, size_hw_px: tuple[int, int]) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (h, w, C) float16 CPU tokens at the given input size."""
        x = torch.from_numpy(prepare_image(image, size_hw_px)).to(self.device)
        if self.fp16:
            x = x.half()
        tokens: torch.Tensor = self.backbone(x)[0].to(torch.float16).cpu()
        return tokens


def _file_identity(path: Path) -> str:
    """Cheap identity of a weights file or directory (name, size, mtime)."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    parts = [f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files if f.is_file()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def prepare_sample(
    sample: TrainingSample,
    extractor: FeatureExtractor,
    max_depth_m: float,
    depth_provider: DepthProvider | None = None,
    provider_is_metric: bool = True,
) -> PreparedSample:
    """Run the backbone and compute the cell geometry of one sample.

    Args:
        sample: the loaded pair.
        extractor: the frozen backbone.
        max_depth_m: lifted points beyond this horizontal range are invalid.
        depth_provider: where depth comes from when not from the sample (None = the sample's
            ``depth_m``, which must then exist).
        provider_is_metric: whether the provider's depth is metric.

    Returns:
        The prepared sample.

    Raises:
        DatasetError: no depth available, or no valid ground cell at all.
    """
    g_tokens = extractor.tokens(sample.ground_image, extractor.ground_size_px)
    a_tokens = extractor.tokens(sample.aerial.image, extractor.aerial_size_px)
    g_grid = (int(g_tokens.shape[0]), int(g_tokens.shape[1]))
    a_grid = (int(a_tokens.shape[0]), int(a_tokens.shape[1]))
    pixels = cell_centers_px(sample.ground_image.shape[:2], g_grid)
    if depth_provider is not None:
        depth = np.asarray(
            depth_provider.depth_at(
                sample.ground_image, sample.camera, pixels, sample.gravity_from_camera
            ),
            np.float64,
        )
        metric = provider_is_metric
    elif sample.depth_m is not None:
        from cvgl_ros.core.depth import sample_depth_map

        depth = _cell_depth(sample.depth_m, pixels, sample_depth_map)
        metric = sample.depth_is_metric
    else:
        raise DatasetError(
            f"sample {sample.sample_id} has no depth; set depth_source to a "
            f"provider or give the reader a depth_dir"
        )
    lifted = lift_cells(sample.camera, sample.gravity_from_camera, pixels, depth, max_depth_m)
    if not lifted.valid.any():
        raise DatasetError(f"sample {sample.sample_id}: no ground cell has a usable depth")
    a_points = aerial_cell_points_m(sample.aerial, a_grid)
    h_px = sample.aerial.image.shape[0]
    return PreparedSample(
        sample_id=sample.sample_id,
        ground_tokens=g_tokens,
        aerial_tokens=a_tokens,
        ground_points_m=torch.from_numpy(lifted.points_m),
        ground_valid=torch.from_numpy(lifted.valid),
        aerial_points_m=torch.from_numpy(a_points),
        aerial_valid=torch.from_numpy(aerial_cell_valid(sample.aerial, a_grid)),
        camera_en_m=torch.tensor(np.asarray(sample.camera_en_m, np.float32)),
        yaw_enu_rad=float(sample.yaw_enu_rad),
        scale=1.0 if metric else math.nan,
        aerial_cell_m=float(sample.aerial.m_per_px * h_px / a_grid[0]),
    )


def _cell_depth(
    depth_map: FloatArray,
    pixels: FloatArray,
    lookup: Callable[[FloatArray, FloatArray], FloatArray],
) -> FloatArray:
    """Depth at the cell centres: bilinear, falling back to the nearest valid pixel at edges."""
    d = lookup(depth_map, pixels)
    bad = ~np.isfinite(d)
    if bad.any():
        h, w = depth_map.shape
        u = np.clip(np.rint(pixels[bad, 0]).astype(np.int64), 0, w - 1)
        v = np.clip(np.rint(pixels[bad, 1]).astype(np.int64), 0, h - 1)
        d[bad] = np.asarray(depth_map, np.float64)[v, u]
    return np.where(np.isfinite(d) & (d > 0), d, np.nan)


class PreparedCache:
    """Disk cache of :class:`PreparedSample` entries, one ``.pt`` file per sample.

    Args:
        root: cache directory.
        settings: everything besides the sample id that the entries depend on.
    """

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        text = json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True, default=str)
        self.key = hashlib.sha256(text.encode()).hexdigest()[:16]
        self.dir = Path(root) / self.key
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "settings.json").write_text(text + "\n")
        self.hits = 0
        self.misses = 0

    def path(self, sample_id: str) -> Path:
        """File of one sample's entry."""
        return self.dir / (hashlib.sha256(sample_id.encode()).hexdigest()[:24] + ".pt")

    def get(self, sample_id: str) -> PreparedSample | None:
        """The cached entry, or None (missing or unreadable)."""
        p = self.path(sample_id)
        if not p.is_file():
            return None
        try:
            entry = PreparedSample.from_dict(torch.load(p, map_location="cpu", weights_only=True))
        except Exception as exc:  # a truncated file from an interrupted run
            LOGGER.warning("ignoring unreadable cache entry %s: %s", p, exc)
            return None
        if entry.sample_id != sample_id:
            return None
        self.hits += 1
        return entry

    def put(self, entry: PreparedSample) -> None:
        """Store an entry atomically."""
        p = self.path(entry.sample_id)
        tmp = p.with_suffix(".tmp")
        torch.save(entry.to_dict(), tmp)
        tmp.replace(p)
        self.misses += 1


class PreparedDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Prepared samples read lazily from a :class:`PreparedCache` (or held in memory).

    Large sets (VIGOR: tens of GB of tokens) stay on disk and are read per batch by the data
    loader's workers; small sets can be kept in memory.

    Args:
        cache: the cache holding the entries.
        sample_ids: ids of the prepared samples, in dataset order.
        in_memory: read every entry once now and keep it.
    """

    def __init__(
        self, cache: PreparedCache, sample_ids: list[str], in_memory: bool = False
    ) -> None:
        self.cache = cache
        self.sample_ids = list(sample_ids)
        self._memory: list[PreparedSample] | None = None
        if in_memory:
            self._memory = [self._read(i) for i in range(len(self.sample_ids))]

    def __len__(self) -> int:
        return len(self.sample_ids)

    def _read(self, index: int) -> PreparedSample:
        entry = self.cache.get(self.sample_ids[index])
        if entry is None:
            raise DatasetError(
                f"prepared sample {self.sample_ids[index]} vanished from the "
                f"cache {self.cache.dir}"
            )
        return entry

    def __getitem__(self, index: int) -> PreparedSample:
        if self._memory is not None:
            return self._memory[index]
        return self._read(index)


def prepare_dataset(
    dataset: PairDataset,
    extractor: FeatureExtractor,
    cache: PreparedCache,
    max_depth_m: float,
    depth_provider: DepthProvider | None = None,
    provider_is_metric: bool = True,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> tuple[list[str], int]:
    """Make sure every sample of a dataset is in the cache (running the backbone on misses).

    Samples that cannot be read or have no usable depth are skipped and counted.

    Returns:
        (ids of the prepared samples in dataset order, number skipped).
    """
    ids: list[str] = []
    skipped = 0
    indices: Iterable[int] = range(len(dataset))
    if progress is not None:
        indices = progress(indices)
    for i in indices:
        sid = dataset.sample_id(i)
        if not cache.path(sid).is_file():
            try:
                entry = prepare_sample(
                    dataset.load(i), extractor, max_depth_m, depth_provider, provider_is_metric
                )
            except DatasetError as exc:
                LOGGER.warning("skipping sample %s: %s", sid, exc)
                skipped += 1
                continue
            cache.put(entry)
        else:
            cache.hits += 1
        ids.append(sid)
    return ids, skipped


def collate(samples: list[PreparedSample]) -> dict[str, torch.Tensor]:
    """Stack prepared samples into a batch (tokens as float32).

    Raises:
        ValueError: samples with different grid sizes (mixed input sizes).
    """
    shapes = {(tuple(s.ground_tokens.shape), tuple(s.aerial_tokens.shape)) for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"samples in one batch must share token grids, got {sorted(shapes)}")
    return {
        "ground_tokens": torch.stack([s.ground_tokens for s in samples]).float(),
        "aerial_tokens": torch.stack([s.aerial_tokens for s in samples]).float(),
        "ground_points_m": torch.stack([s.ground_points_m for s in samples]),
        "ground_valid": torch.stack([s.ground_valid for s in samples]),
        "aerial_points_m": torch.stack([s.aerial_points_m for s in samples]),
        "aerial_valid": torch.stack([s.aerial_valid for s in samples]),
        "camera_en_m": torch.stack([s.camera_en_m for s in samples]),
        "yaw_enu_rad": torch.tensor([s.yaw_enu_rad for s in samples], dtype=torch.float32),
        "scale": torch.tensor([s.scale for s in samples], dtype=torch.float32),
        "aerial_cell_m": torch.tensor([s.aerial_cell_m for s in samples], dtype=torch.float32),
    }
