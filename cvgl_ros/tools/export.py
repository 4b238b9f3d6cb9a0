"""``cvgl-ros export``: export a model to ONNX (TorchScript exporter, opset 17), check it, and
compare it with torch.

Models (all take float32 RGB in [0, 1], NCHW, batch 1, fixed size):

- ``backbone``: images (1, 3, H, W) -> tokens (1, H/14, W/14, C)
- ``head``: tokens (1, H/14, W/14, C) -> descriptors (1, H/14, W/14, D)
- ``features``: backbone + head, images -> descriptors; export it twice, as
  ``matcher_ground.onnx`` (ground size) and ``matcher_aerial.onnx`` (aerial size), for the
  learned matcher's onnxruntime / tensorrt backends
- ``matcher``: (ground_images, aerial_images) -> probabilities (1, Ng, Na)
- ``depth``: images -> depth (1, H, W)
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LOGGER = logging.getLogger(__name__)

MODELS: tuple[str, ...] = ("backbone", "head", "features", "matcher", "depth")
OPSET = 17


@dataclass(frozen=True)
class ExportSpec:
    """A module to export with named example inputs and output names."""

    module: Any
    inputs: dict[str, np.ndarray]
    output_names: tuple[str, ...]


@dataclass(frozen=True)
class ParityReport:
    """Largest differences between torch and ONNX Runtime outputs."""

    max_abs_diff: float
    max_rel_diff: float
    torch_s: float
    onnxruntime_s: float


def _round14(size_px: int) -> int:
    from cvgl_ros.models.backbone import round_to_patch

    rounded = round_to_patch(size_px)
    if rounded != size_px:
        LOGGER.warning("size %d px rounded to %d px (multiple of 14)", size_px, rounded)
    return rounded


def build_spec(args: argparse.Namespace) -> ExportSpec:
    """The module and example inputs ``args`` ask for (random weights only with
    ``--random-weights``)."""
    from cvgl_ros.models.backbone import DinoBackbone, load_dinov2, torch
    from cvgl_ros.models.checkpoint import (
        BACKBONE_SPECS,
        HeadConfig,
        MatcherCheckpointConfig,
        load_matcher_checkpoint,
    )
    from cvgl_ros.models.head import ProjectionHead
    from cvgl_ros.models.networks import (
        FeaturesNetwork,
        build_full_matcher,
        torch_dinov2_random,
    )

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    h, w = _round14(args.height), _round14(args.width)
    image = rng.random((1, 3, h, w), dtype=np.float32)
    random_kwargs = {"num_layers": args.num_layers} if args.num_layers else {}

    def need(value: Any, flag: str) -> None:
        if not value and not args.random_weights:
            raise SystemExit(f"export --model {args.model} needs {flag} (or --random-weights)")

    if args.model in ("head", "features", "matcher"):
        need(args.checkpoint, "--checkpoint")
        checkpoint: Any = (
            load_matcher_checkpoint(args.checkpoint)
            if args.checkpoint
            else MatcherCheckpointConfig(
                backbone_id=args.backbone_id,
                head=HeadConfig(in_dim=BACKBONE_SPECS[args.backbone_id].hidden_size),
            )
        )
    if args.model == "backbone":
        need(args.backbone_weights, "--backbone-weights")
        dino = (
            load_dinov2(args.backbone_weights, args.backbone_id)
            if args.backbone_weights
            else torch_dinov2_random(args.backbone_id, **random_kwargs)
        )
        return ExportSpec(DinoBackbone(dino).eval(), {"images": image}, ("tokens",))
    if args.model == "head":
        cfg = checkpoint.config if hasattr(checkpoint, "tensors") else checkpoint
        head = ProjectionHead(cfg.head).eval()
        if hasattr(checkpoint, "tensors"):
            head.load_state_dict(
                {k: torch.from_numpy(np.array(v)) for k, v in checkpoint.head_state().items()}
            )
        tokens = rng.standard_normal((1, h // 14, w // 14, cfg.head.in_dim)).astype(np.float32)
        return ExportSpec(head, {"tokens": tokens}, ("descriptors",))
    if args.model == "features":
        need(args.backbone_weights, "--backbone-weights")
        net = FeaturesNetwork.from_checkpoint(
            checkpoint, args.backbone_weights or None, **random_kwargs
        )
        return ExportSpec(net, {"images": image}, ("descriptors",))
    if args.model == "matcher":
        need(args.backbone_weights, "--backbone-weights")
        ah = _round14(args.aerial_height or args.height)
        aw = _round14(args.aerial_width or args.width)
        net = build_full_matcher(checkpoint, args.backbone_weights or None, **random_kwargs)
        aerial = rng.random((1, 3, ah, aw), dtype=np.float32)
        return ExportSpec(net, {"ground_images": image, "aerial_images": aerial}, ("probs",))
    from cvgl_ros.models.depth import build_depth_network, load_depth_anything

    need(args.depth_weights, "--depth-weights")
    model = load_depth_anything(
        args.depth_weights or None, args.variant, args.metric, args.max_depth_m, **random_kwargs
    )
    return ExportSpec(build_depth_network(model), {"images": image}, ("depth",))


def torchscript_exporter_kwargs(export_fn: Any) -> dict[str, Any]:
    """Keyword arguments that select the TorchScript exporter of ``torch.onnx.export``.

    torch >= 2.5 has a ``dynamo`` parameter (its default became True in 2.9), so it must be
    passed ``dynamo=False``; torch 2.1-2.4 has no such parameter (the TorchScript exporter is
    the only one ``export`` runs) and raises TypeError on it. Decided from the signature, not
    the version string, so patched or vendor builds (JetPack) are judged by what they accept.
    """
    import inspect

    try:
        params = inspect.signature(export_fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: assume the old API
        return {}
    return {"dynamo": False} if "dynamo" in params else {}


def export_onnx(spec: ExportSpec, out: Path, opset: int = OPSET) -> Path:
    """Export with the TorchScript exporter (``dynamo=False`` where torch has the parameter)
    and run ``onnx.checker``.

    Returns:
        ``out``.
    """
    from cvgl_ros.models.errors import require

    torch: Any = require("torch", "torch", "ONNX export")
    onnx: Any = require("onnx", "onnx", "ONNX export")
    out.parent.mkdir(parents=True, exist_ok=True)
    args = tuple(torch.from_numpy(spec.inputs[n]) for n in spec.inputs)
    module = spec.module.eval()
    # Shapes are fixed per export, so the tracer's "treated as a constant" warnings are expected.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The TorchScript exporter is chosen on purpose (its graphs ran faster under ONNX
        # Runtime than the dynamo export's); silence its deprecation notice.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            args,
            str(out),
            input_names=list(spec.inputs),
            output_names=list(spec.output_names),
            opset_version=opset,
            do_constant_folding=True,
            **torchscript_exporter_kwargs(torch.onnx.export),
        )
    onnx.checker.check_model(str(out), full_check=True)
    return out


def check_parity(spec: ExportSpec, onnx_path: Path, num_threads: int = 2) -> ParityReport:
    """Run torch and ONNX Runtime on the spec's inputs and compare every output."""
    from cvgl_ros.backends.ort_backend import OrtBackend
    from cvgl_ros.backends.torch_backend import TorchBackend

    with (
        TorchBackend(
            spec.module, tuple(spec.inputs), spec.output_names, num_threads=num_threads
        ) as tb,
        OrtBackend(onnx_path, num_threads=num_threads) as ob,
    ):
        ref = tb.run(spec.inputs)
        got = ob.run(spec.inputs)
        max_abs = max_rel = 0.0
        for name in spec.output_names:
            diff = np.abs(ref[name].astype(np.float64) - got[name].astype(np.float64))
            scale = np.maximum(np.abs(ref[name].astype(np.float64)), 1e-6)
            max_abs = max(max_abs, float(diff.max(initial=0.0)))
            max_rel = max(max_rel, float((diff / scale).max(initial=0.0)))
        return ParityReport(max_abs, max_rel, tb.last_latency_s, ob.last_latency_s)


def _main(args: argparse.Namespace) -> int:
    from cvgl_ros.models.errors import ModelError

    out = Path(args.out)
    start = time.perf_counter()
    try:
        spec = build_spec(args)
        export_onnx(spec, out, args.opset)
    except (ModelError, ImportError) as exc:
        print(f"export: {exc}")
        return 2
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in spec.inputs.items())
    print(
        f"export: wrote {out} ({out.stat().st_size / 1e6:.1f} MB, opset {args.opset}) in "
        f"{time.perf_counter() - start:.1f} s; inputs: {shapes}; onnx.checker ok"
    )
    if args.no_parity:
        return 0
    report = check_parity(spec, out)
    print(
        f"parity torch vs onnxruntime: max abs diff {report.max_abs_diff:.3g}, "
        f"max rel diff {report.max_rel_diff:.3g} (torch {report.torch_s * 1e3:.1f} ms, "
        f"onnxruntime {report.onnxruntime_s * 1e3:.1f} ms)"
    )
    if report.max_abs_diff > args.tolerance:
        print(f"export: FAILED parity (max abs diff > {args.tolerance})")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``export`` subcommand."""
    from cvgl_ros.models.checkpoint import BACKBONE_SPECS

    p = sub.add_parser("export", help="export a model to ONNX and check parity with torch")
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--height", type=int, required=True, help="input height, px (rounded to 14)")
    p.add_argument("--width", type=int, required=True, help="input width, px (rounded to 14)")
    p.add_argument("--out", required=True, help="output .onnx path, e.g. engines/NAME.onnx")
    p.add_argument("--checkpoint", default="", help="matcher checkpoint (head/features/matcher)")
    p.add_argument("--backbone-weights", default="", help="DINOv2 HF dir or original .pth")
    p.add_argument(
        "--backbone-id",
        default="dinov2_vits14",
        choices=tuple(BACKBONE_SPECS),
    )
    p.add_argument("--aerial-height", type=int, default=0, help="matcher: aerial height, px")
    p.add_argument("--aerial-width", type=int, default=0, help="matcher: aerial width, px")
    p.add_argument("--depth-weights", default="", help="Depth Anything V2 HF dir or .pth")
    p.add_argument("--variant", default="small", choices=("small", "base", "large"))
    p.add_argument("--metric", action="store_true", help="metric Depth Anything V2 head")
    p.add_argument("--max-depth-m", type=float, default=80.0, help="metric head range, m")
    p.add_argument(
        "--random-weights", action="store_true", help="random weights (benchmarks, smoke tests)"
    )
    p.add_argument("--num-layers", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--opset", type=int, default=OPSET)
    p.add_argument("--tolerance", type=float, default=1e-3, help="max abs diff allowed")
    p.add_argument("--no-parity", action="store_true", help="skip the torch comparison")
    p.set_defaults(func=_main)
