"""The training loop: AdamW, AMP on CUDA, checkpoint/resume, seeds, logs, best-model export.

Run directory layout (``TrainConfig.output_dir``)::

    config.json           the resolved configuration
    log.csv               one row per epoch: losses, validation metrics, time
    last.pt               full training state (head, optimiser, scaler, epoch, RNG) for resume
    best/matcher.safetensors + best/matcher.json
                          the best head (lowest validation median position error) in the
                          node's matcher checkpoint format
    tensorboard/          when enabled and installed
    cache/                prepared samples (backbone tokens + geometry), unless cache_dir is set
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from cvgl_ros.training.cache import (
    FeatureExtractor,
    PreparedCache,
    PreparedDataset,
    collate,
    prepare_dataset,
)
from cvgl_ros.training.config import DataConfig, TrainConfig
from cvgl_ros.training.datasets import KittiDataset, PairDataset, SyntheticDataset, VigorDataset
from cvgl_ros.training.model import TrainableMatcher
from cvgl_ros.training.step import ValidationResult, compute_losses, validate

if TYPE_CHECKING:
    from cvgl_ros.models.config import DepthKind

LOGGER = logging.getLogger(__name__)

LOG_FIELDS = (
    "epoch",
    "step",
    "train_loss",
    "train_vce_m",
    "train_nce_g2a",
    "train_nce_a2g",
    "train_position_error_m",
    "val_median_position_m",
    "val_median_yaw_deg",
    "val_recall_5m",
    "val_failed",
    "val_published",
    "lr",
    "epoch_time_s",
)


def build_dataset(cfg: DataConfig) -> PairDataset:
    """The reader a data section describes.

    Raises:
        cvgl_ros.training.datasets.DatasetError: missing files.
    """
    if cfg.kind == "synthetic" and cfg.synthetic is not None:
        return SyntheticDataset(cfg.synthetic)
    if cfg.kind == "vigor" and cfg.vigor is not None:
        v = cfg.vigor
        return VigorDataset(
            v.root,
            v.split,
            v.cities,
            v.label_root,
            v.semi_positives,
            v.random_orientation,
            v.depth_dir or None,
            cfg.max_samples,
            cfg.seed,
        )
    if cfg.kind == "kitti" and cfg.kitti is not None:
        k = cfg.kitti
        return KittiDataset(
            k.root,
            k.file_list,
            k.aerial_m_per_px,
            k.aerial_crop_px,
            k.depth_dir or None,
            cfg.max_samples,
            cfg.seed,
        )
    raise ValueError(f"data kind {cfg.kind!r} without its section")


def _depth_provider(cfg: DataConfig) -> Any:
    if cfg.depth_source == "dataset":
        return None
    from cvgl_ros.models.factory import build_depth

    kind = cast("DepthKind", cfg.depth_source)  # validated against DEPTH_SOURCES
    return build_depth(dataclasses.replace(cfg.depth, kind=kind))


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU.

    Raises:
        ValueError: ``"cuda"`` requested without a CUDA device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python and torch (CPU and CUDA); numpy draws use explicit generators."""
    random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class TrainResult:
    """Summary of a run.

    Attributes:
        baseline: validation of the untrained (or initial) head, before the first step.
        best: best validation seen.
        best_epoch: epoch of ``best`` (0 = the baseline).
        final_train_loss: mean training loss of the last epoch.
        first_train_loss: mean training loss of the first epoch.
        checkpoint_dir: directory holding the exported best matcher checkpoint.
        log_path: the CSV log.
    """

    baseline: ValidationResult
    best: ValidationResult
    best_epoch: int
    first_train_loss: float
    final_train_loss: float
    checkpoint_dir: Path
    log_path: Path


class Trainer:
    """Prepares data, trains the head and exports the best checkpoint.

    Args:
        config: the run configuration.
        progress: a progress-bar factory with ``tqdm.tqdm``'s signature (the CLI passes
            ``tqdm``): called with an iterable (or None for a manual bar) and ``desc``,
            ``total`` (and ``initial``, ``position``) keywords.
    """

    def __init__(
        self,
        config: TrainConfig,
        progress: Callable[..., Any] | None = None,
    ) -> None:
        self.config = config
        self.progress = progress
        self.output_dir = Path(config.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(config.num_threads)
        self.device = resolve_device(config.device)
        seed_everything(config.seed)
        m = config.model
        self.model = TrainableMatcher(m.head, m.matcher).to(self.device)
        if m.init_checkpoint:
            self.model.load_checkpoint(m.init_checkpoint)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
        )
        self.use_amp = bool(config.optim.amp and self.device.type == "cuda")
        # bfloat16 where the GPU has it (no loss scaling needed), else float16 + GradScaler.
        bf16 = self.use_amp and torch.cuda.is_bf16_supported()
        self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and not bf16)
        self.epoch = 0
        self.step = 0
        self.best_metric = math.inf
        self.best_epoch = -1
        self.baseline: ValidationResult | None = None
        self.best: ValidationResult | None = None
        self.train_samples: PreparedDataset | None = None
        self.val_samples: PreparedDataset | None = None

    # -- data ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Build the readers, run the frozen backbone once per sample (or read the cache)."""
        cfg = self.config
        m = cfg.model
        extractor = FeatureExtractor(
            m.backbone_id,
            m.backbone_weights,
            m.ground_size_px,
            m.aerial_size_px,
            self.device,
            num_layers=m.backbone_num_layers,
            fp16=self.use_amp,
            seed=cfg.seed,
        )
        if extractor.hidden_size != m.head.in_dim:
            raise ValueError(
                f"model.head.in_dim ({m.head.in_dim}) must equal the backbone "
                f"width ({extractor.hidden_size})"
            )
        for name in ("train_data", "val_data"):
            data_cfg: DataConfig = getattr(cfg, name)
            dataset = build_dataset(data_cfg)
            settings = {
                "backbone": extractor.identity,
                "ground_size_px": m.ground_size_px,
                "aerial_size_px": m.aerial_size_px,
                "fp16": extractor.fp16,
                "depth_source": data_cfg.depth_source,
                "depth": dataclasses.asdict(data_cfg.depth)
                if data_cfg.depth_source != "dataset"
                else None,
                "max_depth_m": cfg.optim.max_depth_m,
                "dataset": dataset.name,
            }
            cache = PreparedCache(cfg.cache_path, settings)
            wrap = _progress_wrapper(self.progress, f"prepare {name}", len(dataset))
            ids, skipped = prepare_dataset(
                dataset,
                extractor,
                cache,
                cfg.optim.max_depth_m,
                _depth_provider(data_cfg),
                data_cfg.provider_is_metric,
                progress=wrap,
            )
            LOGGER.info(
                "%s: %d samples ready (%d from cache, %d skipped)",
                name,
                len(ids),
                cache.hits,
                skipped,
            )
            if not ids:
                raise ValueError(f"{name}: no usable sample")
            total_mb = cache.path(ids[0]).stat().st_size * len(ids) / 2**20
            prepared = PreparedDataset(cache, ids, in_memory=total_mb <= cfg.optim.in_memory_mb)
            setattr(self, name.replace("_data", "_samples"), prepared)
        del extractor
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- state -----------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "torch_rng": torch.get_rng_state(),
            "baseline": self.baseline.to_state() if self.baseline else None,
            "best": self.best.to_state() if self.best else None,
        }

    def save_state(self) -> Path:
        """Write ``last.pt`` atomically."""
        path = self.output_dir / "last.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(self._state(), tmp)
        tmp.replace(path)
        return path

    def load_state(self, path: Path) -> None:
        """Resume from a ``last.pt``."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.best_metric = float(state["best_metric"])
        self.best_epoch = int(state["best_epoch"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("baseline"):
            self.baseline = ValidationResult.from_state(state["baseline"])
        if state.get("best"):
            self.best = ValidationResult.from_state(state["best"])
        LOGGER.info("resumed from %s at epoch %d", path, self.epoch)

    def export_best(self, result: ValidationResult) -> Path:
        """Write the current head as the node's matcher checkpoint under ``best/``."""
        m = self.config.model
        out = self.output_dir / "best"
        out.mkdir(parents=True, exist_ok=True)
        self.model.export(
            out,
            m.backbone_id,
            m.ground_size_px,
            m.aerial_size_px,
            metadata={
                "epoch": self.epoch,
                "step": self.step,
                "train_data": self.config.train_data.kind if self.config.train_data else "",
                **{k: (v if math.isfinite(v) else None) for k, v in result.as_dict().items()},
            },
        )
        return out

    # -- loop ------------------------------------------------------------------------------

    def _loader(self, data: PreparedDataset, order: list[int] | None) -> Any:
        o = self.config.optim
        return torch.utils.data.DataLoader(
            data,
            batch_size=o.batch_size,
            sampler=order,
            num_workers=o.num_workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
        )

    def _validate(self) -> ValidationResult:
        o = self.config.optim
        if self.val_samples is None:
            raise RuntimeError("prepare() must run before validation")
        return validate(
            self.model,
            self._loader(self.val_samples, None),
            self.device,
            top_k=o.val_top_k,
            mutual=o.val_mutual,
            seed=self.config.seed,
        )

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training samples; returns the mean of each loss part."""
        o = self.config.optim
        rng = np.random.default_rng([self.config.seed, self.epoch])
        self.model.train()
        sums: dict[str, float] = {}
        count = 0
        if self.train_samples is None:
            raise RuntimeError("prepare() must run before training")
        order = rng.permutation(len(self.train_samples)).tolist()
        batches: Iterable[dict[str, torch.Tensor]] = self._loader(self.train_samples, order)
        if self.progress is not None:
            total = math.ceil(len(self.train_samples) / o.batch_size)
            batches = self.progress(
                batches, desc=f"epoch {self.epoch + 1}", total=total, position=1
            )
        gen = torch.Generator().manual_seed(self.config.seed + self.epoch)
        for cpu_batch in batches:
            batch = {k: v.to(self.device, non_blocking=True) for k, v in cpu_batch.items()}
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                out = compute_losses(self.model, batch, self.config.loss, o, gen)
            loss = out["loss"]
            if not torch.isfinite(loss):
                LOGGER.warning("non-finite loss at step %d; batch skipped", self.step)
                self.optimizer.zero_grad(set_to_none=True)
                continue
            self.optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(self.scaler.scale(loss))
            if o.grad_clip_norm > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.grad_clip_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            count += 1
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            if hasattr(batches, "set_postfix"):
                batches.set_postfix(loss=f"{float(loss):.3f}", vce=f"{float(out['vce_m']):.2f}")
        return {k: v / max(count, 1) for k, v in sums.items()}

    def fit(self) -> TrainResult:
        """Prepare data (if needed), validate the initial head, train, export the best head.

        Returns:
            The run summary (baseline and best validation, first/last training loss).
        """
        cfg = self.config
        if self.train_samples is None:
            self.prepare()
        (self.output_dir / "config.json").write_text(
            json.dumps(dataclasses.asdict(cfg), indent=2, default=str) + "\n"
        )
        last = self.output_dir / "last.pt"
        if cfg.resume and last.is_file():
            self.load_state(last)
        if self.baseline is None:
            self.baseline = self._validate()
            LOGGER.info(
                "initial head: median position %.2f m, yaw %.1f deg",
                self.baseline.median_position_error_m,
                self.baseline.median_yaw_error_deg,
            )
        baseline = self.baseline
        if self.best is None:
            self.best = baseline
            self.best_metric = _metric(baseline)
            self.best_epoch = self.epoch
            self.export_best(baseline)
        log_path = self.output_dir / "log.csv"
        new_log = not log_path.is_file() or self.epoch == 0
        writer_file = log_path.open("w" if new_log else "a", newline="")
        writer = csv.DictWriter(writer_file, fieldnames=LOG_FIELDS)
        if new_log:
            writer.writeheader()
            writer.writerow(self._row(self.epoch, {}, baseline, 0.0))
        tb = _tensorboard(self.output_dir) if cfg.tensorboard else None
        first_loss = math.nan
        last_loss = math.nan
        try:
            epoch_bar = None
            if self.progress is not None:
                # An outer bar over epochs showing the loss and the validation medians.
                epoch_bar = self.progress(
                    None, desc="train", total=cfg.optim.epochs, initial=self.epoch, position=0
                )
            while self.epoch < cfg.optim.epochs:
                t0 = time.perf_counter()
                parts = self.train_epoch()
                self.epoch += 1
                last_loss = parts.get("loss", math.nan)
                if math.isnan(first_loss):
                    first_loss = last_loss
                val: ValidationResult | None = None
                if self.epoch % cfg.optim.val_every_epochs == 0 or self.epoch == cfg.optim.epochs:
                    val = self._validate()
                    if _metric(val) < self.best_metric:
                        self.best_metric = _metric(val)
                        self.best_epoch = self.epoch
                        self.best = val
                        self.export_best(val)
                row = self._row(self.epoch, parts, val, time.perf_counter() - t0)
                writer.writerow(row)
                writer_file.flush()
                if tb is not None:
                    for k, v in row.items():
                        if (
                            k not in ("epoch", "step")
                            and isinstance(v, float)
                            and math.isfinite(v)
                        ):
                            tb.add_scalar(k, v, self.epoch)
                LOGGER.info(
                    "epoch %d: loss %.4f, val median %s m / %s deg",
                    self.epoch,
                    last_loss,
                    row["val_median_position_m"],
                    row["val_median_yaw_deg"],
                )
                if epoch_bar is not None and hasattr(epoch_bar, "set_postfix"):
                    epoch_bar.update(1)
                    epoch_bar.set_postfix(
                        loss=f"{last_loss:.3f}",
                        val_pos_m=row["val_median_position_m"],
                        val_yaw_deg=row["val_median_yaw_deg"],
                    )
                self.save_state()
        finally:
            if epoch_bar is not None and hasattr(epoch_bar, "close"):
                epoch_bar.close()
            writer_file.close()
            if tb is not None:
                tb.close()
        return TrainResult(
            baseline=baseline,
            best=self.best,
            best_epoch=self.best_epoch,
            first_train_loss=first_loss,
            final_train_loss=last_loss,
            checkpoint_dir=self.output_dir / "best",
            log_path=log_path,
        )

    def _row(
        self, epoch: int, parts: dict[str, float], val: ValidationResult | None, seconds: float
    ) -> dict[str, Any]:
        row: dict[str, Any] = {k: "" for k in LOG_FIELDS}
        row.update(
            epoch=epoch,
            step=self.step,
            lr=self.optimizer.param_groups[0]["lr"],
            epoch_time_s=round(seconds, 3),
        )
        for k, v in parts.items():
            key = f"train_{k}"
            if key in row:
                row[key] = round(v, 6)
        if val is not None:
            for k, v in val.as_dict().items():
                row[k] = round(v, 4) if math.isfinite(v) else "inf"
        return row


def _progress_wrapper(
    progress: Callable[..., Any] | None, desc: str, total: int
) -> Callable[[Iterable[int]], Iterable[int]] | None:
    if progress is None:
        return None
    bar = progress

    def wrap(it: Iterable[int]) -> Iterable[int]:
        wrapped: Iterable[int] = bar(it, desc=desc, total=total)
        return wrapped

    return wrap


def _metric(result: ValidationResult) -> float:
    """Model selection: median position error, ties broken by the median yaw error."""
    return result.median_position_error_m + 1e-3 * min(result.median_yaw_error_deg, 1e6)


def _tensorboard(output_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        LOGGER.warning("tensorboard is not installed; logging to log.csv only")
        return None
    return SummaryWriter(str(output_dir / "tensorboard"))
