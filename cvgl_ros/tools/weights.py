"""``cvgl-ros weights check FILE``: name a weights file's format and the architecture it
implies, or refuse it with one line (exit 2).

Recognised: DINOv2 torch hub ``.pth`` (``dinov2_vit{s,b,l}14[_reg4]_pretrain.pth``) and
Hugging Face ``facebook/dinov2-*`` safetensors / directories; Depth Anything V2 ``.pth``
(relative and metric) and ``depth-anything/Depth-Anything-V2-*-hf`` safetensors /
directories; cvgl_ros matcher checkpoints. See :mod:`cvgl_ros.models.weights`.
"""

from __future__ import annotations

import argparse


def _main(args: argparse.Namespace) -> int:
    from cvgl_ros.models.errors import ModelError
    from cvgl_ros.models.weights import identify_weights

    try:
        info = identify_weights(args.file, args.expect)
    except (ModelError, ImportError) as exc:
        print(f"weights check: {args.file}: {exc}")
        return 2
    print(f"{args.file}: {info.format}")
    print(f"  architecture: {info.architecture}")
    print(f"  tensors: {info.num_tensors} ({info.num_parameters / 1e6:.2f} M parameters)")
    print(f"  use as: {info.use_as}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``weights`` subcommand (``weights check FILE``)."""
    from cvgl_ros.models.weights import KINDS

    p = sub.add_parser("weights", help="inspect model weight files")
    actions = p.add_subparsers(dest="weights_command", metavar="ACTION")
    actions.required = True
    check = actions.add_parser(
        "check", help="name a weights file's format and architecture; exit 2 on a mismatch"
    )
    check.add_argument("file", help=".pth / .safetensors file, HF directory or checkpoint")
    check.add_argument(
        "--expect", choices=KINDS, default=None, help="refuse any other kind of weights"
    )
    check.set_defaults(func=_main)
