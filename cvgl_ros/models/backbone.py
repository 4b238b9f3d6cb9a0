"""Frozen DINOv2 ViT/14 backbone (transformers ``Dinov2Model``), weights from local files only.

Two weight forms are accepted:

- a Hugging Face model directory (``config.json`` + ``model.safetensors``), as published at
  ``facebook/dinov2-{small,base,large}``;
- the original ``dinov2_vit{s,b,l}14[_reg4]_pretrain.pth`` from facebookresearch/dinov2
  (torch hub), whose keys are mapped to the transformers names here (``blocks.i.attn.qkv`` is
  split into q/k/v, ``ls1.gamma`` -> ``layer_scale1.lambda1``, ``register_tokens`` ->
  ``embeddings.register_tokens`` for the register models);
- a lone Hugging Face ``model.safetensors`` (``facebook/dinov2-small`` names) without its
  ``config.json``: the architecture is read from the tensor shapes.

Nothing is ever downloaded. This module imports torch; import it only where torch is wanted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cvgl_ros.models.checkpoint import BACKBONE_SPECS, PATCH_SIZE_PX
from cvgl_ros.models.errors import WeightsError, require

LOGGER = logging.getLogger(__name__)

torch: Any = require("torch", "torch", "the DINOv2 backbone")
transformers: Any = require("transformers", "torch", "the DINOv2 backbone")
nn = torch.nn
Module: Any = torch.nn.Module

# ImageNet statistics used by DINOv2 and Depth Anything, RGB order, for inputs in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def round_to_patch(size_px: int, patch_px: int = PATCH_SIZE_PX) -> int:
    """Round a side length to the nearest multiple of the patch size (at least one patch)."""
    if size_px < 1:
        raise ValueError(f"size_px must be >= 1, got {size_px}")
    return max(patch_px, round(size_px / patch_px) * patch_px)


def dinov2_config(
    backbone_id: str = "dinov2_vits14",
    num_layers: int | None = None,
    image_size_px: int = 518,
    **extra: Any,
) -> Any:
    """A ``Dinov2Config`` (``Dinov2WithRegistersConfig`` for ``*_reg``) with every
    architecture field set explicitly.

    ``Dinov2Config()`` defaults to ViT-B; never rely on its defaults.

    Args:
        backbone_id: ``dinov2_vit{s,b,l}14`` or ``dinov2_vit{s,b,l}14_reg``.
        num_layers: override the depth (tests use fewer layers for plumbing checks).
        image_size_px: size the position embeddings were trained at (518 for DINOv2).
        **extra: further config fields (``out_indices``, ``reshape_hidden_states``).
    """
    if backbone_id not in BACKBONE_SPECS:
        raise ValueError(
            f"backbone_id must be one of {sorted(BACKBONE_SPECS)}, got {backbone_id!r}"
        )
    spec = BACKBONE_SPECS[backbone_id]
    fields: dict[str, Any] = dict(
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers if num_layers is None else num_layers,
        num_attention_heads=spec.num_heads,
        mlp_ratio=4,
        patch_size=PATCH_SIZE_PX,
        image_size=image_size_px,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        qkv_bias=True,
        use_swiglu_ffn=False,
        hidden_act="gelu",
        **extra,
    )
    if spec.num_registers:
        return transformers.Dinov2WithRegistersConfig(
            num_register_tokens=spec.num_registers, **fields
        )
    return transformers.Dinov2Config(**fields)


def dinov2_model(config: Any) -> Any:
    """A randomly initialised DINOv2 of ``config`` (with registers when it has them)."""
    if int(getattr(config, "num_register_tokens", 0) or 0):
        return transformers.Dinov2WithRegistersModel(config)
    return transformers.Dinov2Model(config)


# --- original <-> transformers key mapping -------------------------------------------------

_BLOCK_RE = re.compile(r"^blocks\.(?:\d+\.)?(\d+)\.(.+)$")
_BLOCK_RENAMES = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
    "ls1.gamma": "layer_scale1.lambda1",
    "ls2.gamma": "layer_scale2.lambda1",
}
_STEM_RENAMES = {
    "cls_token": "embeddings.cls_token",
    "mask_token": "embeddings.mask_token",
    "register_tokens": "embeddings.register_tokens",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}


def _attention_names(target_keys: set[str], prefix: str) -> tuple[str, str, str, str]:
    """Names of the q/k/v/out projections in the installed transformers version."""
    if any(k.startswith(prefix + "encoder.layer.0.attention.q_proj") for k in target_keys):
        return ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj")
    return (
        "attention.attention.query",
        "attention.attention.key",
        "attention.attention.value",
        "attention.output.dense",
    )


def dinov2_original_to_hf(
    state: Mapping[str, Any], target_keys: set[str], prefix: str = ""
) -> dict[str, Any]:
    """Map an original DINOv2 state dict (facebookresearch names) to transformers names.

    Args:
        state: original tensors (``blocks.i.attn.qkv.weight``, ``pos_embed``, ...); keys
            already stripped of any outer prefix such as ``pretrained.``.
        target_keys: the state-dict keys of the transformers model to load into, used to
            pick the attention naming of the installed transformers version.
        prefix: prefix of the DINOv2 module inside the target model (``"backbone."`` for
            Depth Anything, ``""`` for a bare ``Dinov2Model``).

    Returns:
        A new dict with transformers names.

    Raises:
        WeightsError: an original key that has no transformers counterpart.
    """
    q_name, k_name, v_name, o_name = _attention_names(target_keys, prefix)
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key in _STEM_RENAMES:
            out[prefix + _STEM_RENAMES[key]] = value
            continue
        m = _BLOCK_RE.match(key)
        if m is None:
            raise WeightsError(f"unexpected key {key!r} in original DINOv2 weights")
        layer, rest = int(m.group(1)), m.group(2)
        base = f"{prefix}encoder.layer.{layer}."
        if rest in _BLOCK_RENAMES:
            out[base + _BLOCK_RENAMES[rest]] = value
        elif rest in ("attn.qkv.weight", "attn.qkv.bias"):
            kind = rest.rsplit(".", 1)[1]
            q, k, v = torch.chunk(value, 3, dim=0)
            out[f"{base}{q_name}.{kind}"] = q.clone()
            out[f"{base}{k_name}.{kind}"] = k.clone()
            out[f"{base}{v_name}.{kind}"] = v.clone()
        elif rest in ("attn.proj.weight", "attn.proj.bias"):
            out[f"{base}{o_name}.{rest.rsplit('.', 1)[1]}"] = value
        else:
            raise WeightsError(f"unexpected key {key!r} in original DINOv2 weights")
    return out


def dinov2_hf_to_original(state: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Inverse of :func:`dinov2_original_to_hf` (writes checkpoints in the original form)."""
    stem_inverse = {v: k for k, v in _STEM_RENAMES.items()}
    block_inverse = {v: k for k, v in _BLOCK_RENAMES.items()}
    layer_re = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
    out: dict[str, Any] = {}
    pending: dict[tuple[int, str], dict[str, Any]] = {}
    for full_key, value in state.items():
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix) :]
        if key in stem_inverse:
            out[stem_inverse[key]] = value
            continue
        m = layer_re.match(key)
        if m is None:
            raise WeightsError(f"unexpected transformers DINOv2 key {full_key!r}")
        layer, rest = int(m.group(1)), m.group(2)
        if rest in block_inverse:
            out[f"blocks.{layer}.{block_inverse[rest]}"] = value
            continue
        name, kind = rest.rsplit(".", 1)
        if name in ("attention.q_proj", "attention.attention.query"):
            pending.setdefault((layer, kind), {})["q"] = value
        elif name in ("attention.k_proj", "attention.attention.key"):
            pending.setdefault((layer, kind), {})["k"] = value
        elif name in ("attention.v_proj", "attention.attention.value"):
            pending.setdefault((layer, kind), {})["v"] = value
        elif name in ("attention.o_proj", "attention.output.dense"):
            out[f"blocks.{layer}.attn.proj.{kind}"] = value
        else:
            raise WeightsError(f"unexpected transformers DINOv2 key {full_key!r}")
    for (layer, kind), parts in pending.items():
        absent = [n for n in ("q", "k", "v") if n not in parts]
        if absent:
            raise WeightsError(
                f"layer {layer} attention {kind} lacks its {'/'.join(absent)} projection"
            )
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def load_torch_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Load a ``.pth`` state dict safely (tensors only), unwrapping ``{"model": ...}``.

    Args:
        path: the file.
        mmap: map the tensors instead of reading them (shape inspection of large files).
    """
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises several types for corrupt / non-tensor files
        raise WeightsError(f"cannot read torch checkpoint {path}: {exc}") from exc
    for wrapper in ("model", "state_dict", "teacher"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    return dict(state)


def load_state_file(path: Path) -> dict[str, Any]:
    """A state dict from ``.safetensors`` (safetensors) or any other suffix (torch ``.pth``).

    Raises:
        WeightsError: unreadable, truncated or not a tensor file.
    """
    if path.suffix != ".safetensors":
        return load_torch_checkpoint(path)
    st_torch = require("safetensors.torch", "torch", "reading .safetensors weights")
    try:
        return dict(st_torch.load_file(str(path), device="cpu"))
    except Exception as exc:  # safetensors raises its own error types
        raise WeightsError(f"cannot read safetensors file {path}: {exc}") from exc


def is_hf_dinov2(state: Mapping[str, Any], prefix: str = "") -> bool:
    """True when ``state`` uses transformers names (``embeddings.*``, ``encoder.layer.*``)."""
    return any(k.startswith((prefix + "embeddings.", prefix + "encoder.layer.")) for k in state)


def backbone_id_for(width: int, registers: int = 0) -> str:
    """``dinov2_vit{s,b,l}14[_reg]`` of an embedding width and register count.

    Raises:
        WeightsError: no supported DINOv2 has them (ViT-g/14 is not supported).
    """
    for backbone_id, spec in BACKBONE_SPECS.items():
        if spec.hidden_size == width and spec.num_registers == registers:
            return backbone_id
    if width == 1536:
        raise WeightsError("DINOv2 ViT-g/14 (width 1536, SwiGLU MLP) is not supported")
    raise WeightsError(f"no supported DINOv2 has width {width} and {registers} registers")


def backbone_id_from_original(state: Mapping[str, Any]) -> str:
    """Infer ``dinov2_vit{s,b,l}14[_reg]`` from an original state dict (embedding width,
    register tokens)."""
    if "cls_token" not in state:
        raise WeightsError("original DINOv2 weights have no 'cls_token'")
    registers = int(state["register_tokens"].shape[1]) if "register_tokens" in state else 0
    return backbone_id_for(int(state["cls_token"].shape[-1]), registers)


def _load_strict(model: Any, state: Mapping[str, Any], source: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"{source} does not fit the architecture: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise WeightsError(
                f"{source}: {key} has shape {tuple(tensor.shape)}, "
                f"the architecture expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


def load_dinov2(path: str | Path, backbone_id: str | None = None) -> Any:
    """Load DINOv2 from local weights (HF directory, original ``.pth`` or HF ``.safetensors``).

    Args:
        path: a Hugging Face model directory, an original ``dinov2_vit*14[_reg4]_pretrain.pth``
            or a Hugging Face ``model.safetensors`` (``facebook/dinov2-*`` names).
        backbone_id: expected ``dinov2_vit{s,b,l}14[_reg]``; checked against the weights.

    Returns:
        ``transformers.Dinov2Model`` (``Dinov2WithRegistersModel`` for the register models)
        in eval mode with frozen parameters.

    Raises:
        WeightsError: missing file, unreadable weights, unknown or missing tensors, a shape
            or size mismatch.
    """
    p = Path(path)
    if p.is_dir():
        model = _load_hf_dinov2_dir(p)
        registers = int(getattr(model.config, "num_register_tokens", 0) or 0)
        found = backbone_id_for(int(model.config.hidden_size), registers)
    elif p.is_file():
        state = load_state_file(p)
        if is_hf_dinov2(state):
            state = dinov2_hf_to_original(state)
        found = backbone_id_from_original(state)
        blocks = {int(m.group(1)) for k in state if (m := _BLOCK_RE.match(k))}
        pos = state.get("pos_embed")
        grid = round(((pos.shape[1] - 1) if pos is not None else 1369) ** 0.5)
        config = dinov2_config(found, num_layers=len(blocks), image_size_px=grid * PATCH_SIZE_PX)
        model = dinov2_model(config)
        mapped = dinov2_original_to_hf(state, set(model.state_dict()))
        _load_strict(model, mapped, p)
    else:
        raise WeightsError(f"DINOv2 weights not found at {p} (nothing is downloaded)")
    if backbone_id is not None and found != backbone_id:
        raise WeightsError(f"{p} holds {found}, expected {backbone_id}")
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def _load_hf_dinov2_dir(p: Path) -> Any:
    """``from_pretrained`` of a local HF directory, with or without registers."""
    import json

    if not (p / "config.json").is_file():
        raise WeightsError(f"{p} is a directory without config.json (not a HF model dir)")
    try:
        model_type = json.loads((p / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {p / 'config.json'}: {exc}") from exc
    cls = (
        transformers.Dinov2WithRegistersModel
        if model_type == "dinov2_with_registers"
        else transformers.Dinov2Model
    )
    try:
        return cls.from_pretrained(str(p), local_files_only=True)
    except Exception as exc:  # transformers raises OSError / ValueError / KeyError
        raise WeightsError(f"cannot load DINOv2 from {p}: {exc}") from exc


class DinoBackbone(Module):  # type: ignore[misc]
    """DINOv2 with ImageNet normalisation built in, returning a grid of patch tokens.

    Input: ``images`` (B, 3, H, W) float32 RGB in [0, 1], H and W multiples of 14.
    Output: ``tokens`` (B, H / 14, W / 14, C) float32 (last layer, after the final LayerNorm).
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def num_registers(self) -> int:
        """Register tokens between the class token and the patch tokens (0 without)."""
        return int(getattr(self.model.config, "num_register_tokens", 0) or 0)

    @property
    def hidden_size(self) -> int:
        """Token width C."""
        return int(self.model.config.hidden_size)

    def forward(self, images: Any) -> Any:
        h, w = int(images.shape[-2]), int(images.shape[-1])
        if h % PATCH_SIZE_PX or w % PATCH_SIZE_PX:
            raise ValueError(f"input size {h}x{w} is not a multiple of {PATCH_SIZE_PX}")
        x = (images - self.mean) / self.std
        # (B, 1 + registers + h*w, C): class token, register tokens, patch tokens.
        hidden = self.model(pixel_values=x).last_hidden_state
        tokens = hidden[:, 1 + self.num_registers :, :]
        return tokens.reshape(
            images.shape[0], h // PATCH_SIZE_PX, w // PATCH_SIZE_PX, tokens.shape[-1]
        )
