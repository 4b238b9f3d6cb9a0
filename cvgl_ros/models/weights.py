"""Identify a weights file by its tensor names and shapes (``cvgl-ros weights check``).

The expected names and shapes are written out here from the upstream model code, not taken
from our own key mapping, so that the tests can hold the mapping to them:

- DINOv2 (facebookresearch/dinov2 ``DinoVisionTransformer``, torch hub
  ``dinov2_vit{s,b,l}14[_reg4]_pretrain.pth``): ``cls_token`` (1, 1, D), ``pos_embed``
  (1, 1 + 37 * 37, D), ``mask_token`` (1, D), ``register_tokens`` (1, 4, D) for the register
  models, ``patch_embed.proj.weight`` (D, 3, 14, 14), per block ``norm1``, ``attn.qkv``
  (3D, D), ``attn.proj``, ``ls1.gamma``, ``norm2``, ``mlp.fc1`` (4D, D), ``mlp.fc2``,
  ``ls2.gamma``, and the final ``norm``;
- Depth Anything V2 (DepthAnything/Depth-Anything-V2 ``dpt.py``,
  ``depth_anything_v2[_metric_{hypersim,vkitti}]_vit{s,b,l}.pth``): that DINOv2 under
  ``pretrained.`` and the ``DPTHead`` under ``depth_head.`` (``projects``, ``resize_layers``
  0/1/3, ``scratch.layer{1..4}_rn``, ``scratch.refinenet{1..4}`` with ``out_conv`` and two
  ``resConfUnit``, ``scratch.output_conv1``, ``scratch.output_conv2.{0,2}``);
- the Hugging Face files (``facebook/dinov2-*``, ``depth-anything/Depth-Anything-V2-*-hf``)
  carry the same tensors under transformers' names (converted by transformers'
  ``convert_dinov2_to_hf.py`` / ``convert_depth_anything_to_hf.py``); they are mapped back to
  the names above before the comparison.

Reading shapes needs no tensor data for ``.safetensors`` (header only); ``.pth`` files are
read with ``torch.load(weights_only=True, mmap=True)``. DINOv2 and Depth Anything files need
torch (only the torch backend and the export use them); matcher checkpoints do not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvgl_ros.models.checkpoint import BACKBONE_SPECS, PATCH_SIZE_PX, VitSpec
from cvgl_ros.models.errors import WeightsError

Shapes = dict[str, tuple[int, ...]]

KINDS: tuple[str, ...] = ("backbone", "depth", "matcher")
_SIZE_LETTER = {384: "S", 768: "B", 1024: "L"}
# Depth Anything V2 metric fine-tunes: file-name tag -> max depth (metres) they were trained for.
METRIC_DATASETS: dict[str, float] = {"hypersim": 20.0, "vkitti": 80.0}


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights file is.

    Attributes:
        kind: ``"backbone"`` (DINOv2), ``"depth"`` (Depth Anything V2) or ``"matcher"``.
        format: human-readable format (``"DINOv2 ViT-S/14 torch hub .pth"``).
        architecture: the architecture it implies.
        num_tensors: tensors in the file.
        num_parameters: scalar parameters in the file.
        use_as: the parameter (and values) to configure it with.
    """

    kind: str
    format: str
    architecture: str
    num_tensors: int
    num_parameters: int
    use_as: str


# --- expected shapes, from the upstream model code ------------------------------------------


def dinov2_original_shapes(spec: VitSpec, grid: int = 37, prefix: str = "") -> Shapes:
    """Every tensor of an original DINOv2 state dict (``block_chunks=0``, as torch hub saves).

    Args:
        spec: the architecture.
        grid: side of the position-embedding grid (37 for the 518 px training size).
        prefix: outer prefix (``"pretrained."`` inside Depth Anything).
    """
    d = spec.hidden_size
    shapes: Shapes = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 1 + grid * grid, d),
        "mask_token": (1, d),
        "patch_embed.proj.weight": (d, 3, PATCH_SIZE_PX, PATCH_SIZE_PX),
        "patch_embed.proj.bias": (d,),
        "norm.weight": (d,),
        "norm.bias": (d,),
    }
    if spec.num_registers:
        shapes["register_tokens"] = (1, spec.num_registers, d)
    for i in range(spec.num_layers):
        block = {
            "norm1.weight": (d,),
            "norm1.bias": (d,),
            "attn.qkv.weight": (3 * d, d),
            "attn.qkv.bias": (3 * d,),
            "attn.proj.weight": (d, d),
            "attn.proj.bias": (d,),
            "ls1.gamma": (d,),
            "norm2.weight": (d,),
            "norm2.bias": (d,),
            "mlp.fc1.weight": (4 * d, d),
            "mlp.fc1.bias": (4 * d,),
            "mlp.fc2.weight": (d, 4 * d),
            "mlp.fc2.bias": (d,),
            "ls2.gamma": (d,),
        }
        shapes.update({f"blocks.{i}.{k}": v for k, v in block.items()})
    return {prefix + k: v for k, v in shapes.items()}


def depth_anything_original_shapes(variant: str, grid: int = 37) -> Shapes:
    """Every tensor of an original Depth Anything V2 state dict (``pretrained.`` DINOv2 +
    ``depth_head.`` DPT head; identical for the relative and the metric models)."""
    from cvgl_ros.models.depth import DEPTH_SPECS

    spec = DEPTH_SPECS[variant]
    vit = BACKBONE_SPECS[spec.backbone_id]
    d, f, oc = vit.hidden_size, spec.fusion_hidden_size, spec.neck_hidden_sizes
    shapes = dinov2_original_shapes(vit, grid, prefix="pretrained.")
    head: Shapes = {}
    for i in range(4):
        head[f"projects.{i}.weight"] = (oc[i], d, 1, 1)
        head[f"projects.{i}.bias"] = (oc[i],)
        head[f"scratch.layer{i + 1}_rn.weight"] = (f, oc[i], 3, 3)  # bias=False upstream
    # ConvTranspose2d weights are (in, out, k, k); resize_layers.2 is an Identity.
    head["resize_layers.0.weight"] = (oc[0], oc[0], 4, 4)
    head["resize_layers.0.bias"] = (oc[0],)
    head["resize_layers.1.weight"] = (oc[1], oc[1], 2, 2)
    head["resize_layers.1.bias"] = (oc[1],)
    head["resize_layers.3.weight"] = (oc[3], oc[3], 3, 3)
    head["resize_layers.3.bias"] = (oc[3],)
    for r in range(1, 5):
        head[f"scratch.refinenet{r}.out_conv.weight"] = (f, f, 1, 1)
        head[f"scratch.refinenet{r}.out_conv.bias"] = (f,)
        for unit in (1, 2):
            for conv in (1, 2):
                head[f"scratch.refinenet{r}.resConfUnit{unit}.conv{conv}.weight"] = (f, f, 3, 3)
                head[f"scratch.refinenet{r}.resConfUnit{unit}.conv{conv}.bias"] = (f,)
    head["scratch.output_conv1.weight"] = (f // 2, f, 3, 3)
    head["scratch.output_conv1.bias"] = (f // 2,)
    head["scratch.output_conv2.0.weight"] = (32, f // 2, 3, 3)
    head["scratch.output_conv2.0.bias"] = (32,)
    head["scratch.output_conv2.2.weight"] = (1, 32, 1, 1)
    head["scratch.output_conv2.2.bias"] = (1,)
    shapes.update({f"depth_head.{k}": v for k, v in head.items()})
    return shapes


# --- reading ---------------------------------------------------------------------------------


def read_shapes(path: Path) -> tuple[Shapes, dict[str, str]]:
    """Tensor name -> shape of a ``.safetensors`` or torch file, and the safetensors metadata.

    Raises:
        WeightsError: unreadable, truncated or not a tensor file.
    """
    if path.suffix == ".safetensors":
        from cvgl_ros.models.checkpoint import SAFETENSORS_PIP
        from cvgl_ros.models.errors import require

        safetensors = require("safetensors", "onnx", "reading .safetensors", SAFETENSORS_PIP)
        try:
            with safetensors.safe_open(str(path), framework="numpy") as fh:
                names = fh.keys()  # safe_open is not iterable
                shapes = {k: tuple(int(d) for d in fh.get_slice(k).get_shape()) for k in names}
                metadata = dict(fh.metadata() or {})
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsError(f"not a readable safetensors file ({exc})") from exc
        return shapes, metadata
    from cvgl_ros.models.backbone import load_torch_checkpoint

    try:
        state = load_torch_checkpoint(path, mmap=True)
    except WeightsError as exc:
        raise WeightsError(f"not a readable torch checkpoint ({exc.__cause__ or exc})") from exc
    if not all(hasattr(v, "shape") for v in state.values()):
        raise WeightsError("the file does not hold a state dict of tensors")
    return {str(k): tuple(int(d) for d in v.shape) for k, v in state.items()}, {}


def _meta(shapes: Shapes) -> dict[str, Any]:
    """Data-free tensors of the given shapes (for running the name mappings on shapes)."""
    from cvgl_ros.models.backbone import torch

    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


def _shapes_of(state: Mapping[str, Any]) -> Shapes:
    return {k: tuple(int(d) for d in v.shape) for k, v in state.items()}


def compare_shapes(got: Shapes, expected: Shapes, what: str) -> None:
    """Raise naming the first differences: unknown tensors, missing tensors, wrong shapes.

    Raises:
        WeightsError: one line, at most three names per kind of difference.
    """
    unknown = sorted(set(got) - set(expected))
    missing = sorted(set(expected) - set(got))
    wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])

    def few(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")

    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown tensor(s): {few(unknown)}")
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {few(missing)}")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} tensor(s) of the wrong shape: {k} is {got[k]}, {what} has "
            f"{expected[k]}" + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else "")
        )
    if problems:
        raise WeightsError(f"does not match {what}: " + "; ".join(problems))


def _grid(shapes: Shapes, key: str) -> int:
    pos = shapes.get(key)
    if pos is None or len(pos) != 3:
        return 37
    side = math.isqrt(pos[1] - 1)
    return side if side * side == pos[1] - 1 else 37


def _vit_name(backbone_id: str) -> str:
    spec = BACKBONE_SPECS[backbone_id]
    name = f"DINOv2 ViT-{_SIZE_LETTER[spec.hidden_size]}/14"
    return name + (f" with {spec.num_registers} registers" if spec.num_registers else "")


def _vit_architecture(backbone_id: str, grid: int) -> str:
    spec = BACKBONE_SPECS[backbone_id]
    return (
        f"backbone_id {backbone_id}: width {spec.hidden_size}, {spec.num_layers} layers, "
        f"{spec.num_heads} heads, patch {PATCH_SIZE_PX}, {spec.num_registers} registers, "
        f"position grid {grid}x{grid} ({grid * PATCH_SIZE_PX} px)"
    )


def _identify_dinov2(shapes: Shapes, container: str) -> WeightsInfo:
    from cvgl_ros.models.backbone import (
        backbone_id_from_original,
        dinov2_hf_to_original,
        is_hf_dinov2,
    )

    hf = is_hf_dinov2(shapes)
    original = _shapes_of(dinov2_hf_to_original(_meta(shapes))) if hf else shapes
    backbone_id = backbone_id_from_original(_meta(original))
    grid = _grid(original, "pos_embed")
    name = _vit_name(backbone_id)
    compare_shapes(original, dinov2_original_shapes(BACKBONE_SPECS[backbone_id], grid), name)
    return WeightsInfo(
        kind="backbone",
        format=f"{name} {'HF ' + container if hf else 'torch hub ' + container}",
        architecture=_vit_architecture(backbone_id, grid),
        num_tensors=len(shapes),
        num_parameters=sum(math.prod(s) for s in shapes.values()),
        use_as="matcher.learned.backbone_weights_path (or cvgl-ros export --backbone-weights); "
        f"the matcher checkpoint must name backbone_id {backbone_id}",
    )


def _metric_from_name(path: Path) -> str:
    stem = path.name.lower()
    for tag, max_depth_m in METRIC_DATASETS.items():
        if "metric" in stem and tag in stem:
            return f"metric ({tag}: depth.model.metric: true, max_depth_m: {max_depth_m:g})"
    if "metric" in stem:
        return "metric (depth.model.metric: true; set max_depth_m: 20 indoor, 80 outdoor)"
    return (
        "relative or metric: the weights do not say (same tensors); the official metric "
        "files are named depth_anything_v2_metric_{hypersim,vkitti}_vit*.pth"
    )


def _identify_depth(
    shapes: Shapes, container: str, path: Path, hf_config: Mapping[str, Any] | None
) -> WeightsInfo:
    from cvgl_ros.models.depth import DEPTH_SPECS, depth_hf_to_original

    hf = any(k.startswith(("neck.", "head.", "backbone.")) for k in shapes)
    original = _shapes_of(depth_hf_to_original(_meta(shapes))) if hf else shapes
    token = original.get("pretrained.cls_token")
    if token is None:
        raise WeightsError("Depth Anything weights without a backbone class token")
    widths = {BACKBONE_SPECS[s.backbone_id].hidden_size: v for v, s in DEPTH_SPECS.items()}
    variant = widths.get(token[-1])
    if variant is None:
        raise WeightsError(f"no Depth Anything V2 variant has backbone width {token[-1]}")
    name = f"Depth Anything V2 {variant.title()}"
    grid = _grid(original, "pretrained.pos_embed")
    compare_shapes(original, depth_anything_original_shapes(variant, grid), name)
    if hf_config is not None:
        kind = hf_config.get("depth_estimation_type", "relative")
        depth_kind = f"{kind} (config.json: depth.model.metric: {str(kind == 'metric').lower()})"
    else:
        depth_kind = _metric_from_name(path)
    spec = DEPTH_SPECS[variant]
    return WeightsInfo(
        kind="depth",
        format=f"{name} {'HF ' + container if hf else container}",
        architecture=(
            f"{spec.backbone_id} taps {spec.out_indices}, DPT features "
            f"{spec.fusion_hidden_size}, neck {spec.neck_hidden_sizes}; {depth_kind}"
        ),
        num_tensors=len(shapes),
        num_parameters=sum(math.prod(s) for s in shapes.values()),
        use_as=f"depth.model.weights_path with depth.model.variant: {variant}"
        + ("" if variant == "small" else " (Base/Large weights: CC-BY-NC-4.0, non-commercial)"),
    )


def _identify_matcher(path: Path) -> WeightsInfo:
    from cvgl_ros.models.checkpoint import (
        checkpoint_paths,
        head_tensor_shapes,
        load_matcher_checkpoint,
    )

    checkpoint = load_matcher_checkpoint(path)
    cfg = checkpoint.config
    got = {k: tuple(int(d) for d in v.shape) for k, v in checkpoint.tensors.items()}
    compare_shapes(got, head_tensor_shapes(cfg.head), "the head its JSON describes")
    head = cfg.head
    return WeightsInfo(
        kind="matcher",
        format=f"cvgl_ros matching head checkpoint (format version {cfg.version})",
        architecture=(
            f"backbone {cfg.backbone_id}; head in {head.in_dim}, hidden {head.hidden_dim}, out "
            f"{head.out_dim}, {head.num_conv_layers} conv layers, {head.num_heads} heads; "
            f"ground {cfg.ground_size_px[0]}x{cfg.ground_size_px[1]} px, aerial "
            f"{cfg.aerial_size_px[0]}x{cfg.aerial_size_px[1]} px; temperature "
            f"{checkpoint.temperature:.4g}, dustbin {checkpoint.dustbin_score:.4g}"
        ),
        num_tensors=len(got),
        num_parameters=sum(math.prod(s) for s in got.values()),
        use_as=f"matcher.learned.checkpoint_path: {checkpoint_paths(path)[0]}",
    )


def identify_weights(path: str | Path, expect: str | None = None) -> WeightsInfo:
    """Name a weights file's format and the architecture it implies, or refuse it.

    Args:
        path: a ``.pth`` / ``.safetensors`` file, a Hugging Face directory (``config.json`` +
            ``model.safetensors``), or a matcher checkpoint (directory, ``.safetensors`` or
            ``.json``).
        expect: ``"backbone"``, ``"depth"`` or ``"matcher"``: refuse any other kind.

    Raises:
        WeightsError: unreadable or truncated file, unknown format, unknown or missing
            tensors, wrong shapes, or another kind than ``expect``. One line.
        ValueError: an unknown ``expect``.
    """
    if expect is not None and expect not in KINDS:
        raise ValueError(f"expect must be one of {KINDS}, got {expect!r}")
    from cvgl_ros.models.checkpoint import checkpoint_paths

    p = Path(path)
    if not p.exists() and checkpoint_paths(p)[0].is_file():
        p = checkpoint_paths(p)[0]  # a matcher checkpoint named without its suffix
    if not p.exists():
        raise WeightsError("no such file or directory")
    hf_config: dict[str, Any] | None = None
    if p.is_dir() and (p / "matcher.json").is_file():
        info = _identify_matcher(p)
    else:
        if p.is_dir():
            if not (p / "model.safetensors").is_file():
                raise WeightsError(
                    "a directory without model.safetensors (HF model) or matcher.json "
                    "(matcher checkpoint)"
                )
            try:
                hf_config = json.loads((p / "config.json").read_text())
            except (OSError, ValueError):
                hf_config = None
            file = p / "model.safetensors"
            container = "directory (config.json + model.safetensors)"
        else:
            file = p.with_suffix(".safetensors") if p.suffix == ".json" else p
            container = "safetensors" if file.suffix == ".safetensors" else ".pth"
        shapes, metadata = read_shapes(file)
        from cvgl_ros.models.checkpoint import METADATA_KEY

        if METADATA_KEY in metadata or (
            shapes and all(k.startswith(("head.", "matcher.")) for k in shapes)
        ):
            info = _identify_matcher(file)
        elif any(k.startswith(("pretrained.", "depth_head.", "neck.")) for k in shapes):
            info = _identify_depth(shapes, container, file, hf_config)
        elif any(k in shapes for k in ("cls_token", "embeddings.cls_token")):
            info = _identify_dinov2(shapes, container)
        else:
            sample = ", ".join(sorted(shapes)[:3]) or "no tensors"
            raise WeightsError(
                f"not a DINOv2, Depth Anything V2 or cvgl_ros matcher file (tensors: {sample})"
            )
    if expect is not None and info.kind != expect:
        raise WeightsError(
            f"is a {info.format} ({info.kind}), but a {expect} was expected"
            f"{' (' + _WHERE[expect] + ')' if expect in _WHERE else ''}"
        )
    return info


_WHERE = {
    "backbone": "matcher.learned.backbone_weights_path: a DINOv2",
    "depth": "depth.model.weights_path: a Depth Anything V2 model",
    "matcher": "matcher.learned.checkpoint_path: a cvgl_ros matcher checkpoint",
}
