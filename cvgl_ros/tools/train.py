"""``cvgl-ros train --config train.yaml``: train the learned matcher's projection head.

See ``docs/TRAINING.md``. Writes ``<output_dir>/best/matcher.{safetensors,json}``, the
checkpoint the node's learned matcher loads.
"""

from __future__ import annotations

import argparse
import logging
import math


def _fmt(value: float, unit: str) -> str:
    return f"{value:.2f} {unit}" if math.isfinite(value) else "no pose"


def _main(args: argparse.Namespace) -> int:
    try:
        from cvgl_ros.training.config import ConfigError, load_train_config
    except ImportError as exc:
        print(
            f"error: training needs torch and transformers (pip install 'cvgl_ros[torch]'): {exc}"
        )
        return 2
    overrides: dict[str, object] = {}
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    if args.device:
        overrides["device"] = args.device
    if args.no_resume:
        overrides["resume"] = False
    try:
        config = load_train_config(args.config, overrides)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    if args.epochs is not None:
        import dataclasses

        config = dataclasses.replace(
            config, optim=dataclasses.replace(config.optim, epochs=args.epochs)
        )
    from cvgl_ros.training.trainer import Trainer

    progress = None
    if not args.no_progress:
        try:
            from tqdm import tqdm

            def progress(it, **kwargs):  # type: ignore[no-untyped-def]
                kwargs.setdefault("leave", kwargs.get("position") == 0)
                return tqdm(it, dynamic_ncols=True, **kwargs)
        except ImportError:
            logging.getLogger(__name__).warning("tqdm not installed: no progress bar")
    trainer = Trainer(config, progress=progress)
    result = trainer.fit()
    base, best = result.baseline, result.best
    print(
        f"validation samples: {len(trainer.val_samples)}, training samples: "
        f"{len(trainer.train_samples)}"
    )
    print(
        f"training loss: first epoch {result.first_train_loss:.4f} -> last epoch "
        f"{result.final_train_loss:.4f}"
    )
    print(
        f"initial head: median position {_fmt(base.median_position_error_m, 'm')}, "
        f"median yaw {_fmt(base.median_yaw_error_deg, 'deg')}, "
        f"recall@5m {100 * base.recall(5.0):.0f} %"
    )
    print(
        f"best (epoch {result.best_epoch}): median position "
        f"{_fmt(best.median_position_error_m, 'm')}, median yaw "
        f"{_fmt(best.median_yaw_error_deg, 'deg')}, recall@5m {100 * best.recall(5.0):.0f} %"
    )
    print(f"matcher checkpoint: {result.checkpoint_dir}")
    print(f"log: {result.log_path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``train`` subcommand."""
    p = sub.add_parser("train", help="train the learned matcher's projection head")
    p.add_argument("--config", required=True, help="training YAML (see docs/TRAINING.md)")
    p.add_argument("--output-dir", help="override output_dir")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override device")
    p.add_argument("--epochs", type=int, help="override optim.epochs")
    p.add_argument("--no-resume", action="store_true", help="ignore <output_dir>/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_main)
