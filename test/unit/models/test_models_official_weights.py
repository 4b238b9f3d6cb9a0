"""The official pretrained weights load by their REAL tensor names and shapes.

No weights can be downloaded here, so each official file is rebuilt with random values under
the exact names and shapes the upstream code saves (written out below from
facebookresearch/dinov2 ``DinoVisionTransformer``, DepthAnything/Depth-Anything-V2
``dpt.py`` and transformers' ``convert_dinov2_to_hf.py`` / ``convert_depth_anything_to_hf.py``,
independently of the package's own tables), at full ViT-S size; B/L are checked on the meta
device (no memory).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from cvgl_ros.models.backbone import (  # noqa: E402
    DinoBackbone,
    dinov2_config,
    dinov2_model,
    dinov2_original_to_hf,
    load_dinov2,
)
from cvgl_ros.models.checkpoint import BACKBONE_SPECS  # noqa: E402
from cvgl_ros.models.depth import (  # noqa: E402
    DEPTH_SPECS,
    depth_anything_config,
    depth_original_to_hf,
    load_depth_anything,
)
from cvgl_ros.models.errors import WeightsError  # noqa: E402
from cvgl_ros.models.weights import (  # noqa: E402
    depth_anything_original_shapes,
    dinov2_original_shapes,
    identify_weights,
)
from cvgl_ros.tools.cli import main  # noqa: E402

torch.set_num_threads(2)
Shapes = dict[str, tuple[int, ...]]


# --- the upstream names, written out --------------------------------------------------------


def hub_dinov2_names(d: int, depth: int, registers: int = 0, grid: int = 37) -> Shapes:
    """torch hub ``dinov2_vit*14[_reg4]_pretrain.pth`` (DinoVisionTransformer, block_chunks 0)."""
    out: Shapes = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 1 + grid * grid, d),
        "mask_token": (1, d),
        "patch_embed.proj.weight": (d, 3, 14, 14),
        "patch_embed.proj.bias": (d,),
        "norm.weight": (d,),
        "norm.bias": (d,),
    }
    if registers:
        out["register_tokens"] = (1, registers, d)
    for i in range(depth):
        b = f"blocks.{i}."
        out |= {
            b + "norm1.weight": (d,), b + "norm1.bias": (d,),
            b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "ls1.gamma": (d,), b + "ls2.gamma": (d,),
            b + "norm2.weight": (d,), b + "norm2.bias": (d,),
            b + "mlp.fc1.weight": (4 * d, d), b + "mlp.fc1.bias": (4 * d,),
            b + "mlp.fc2.weight": (d, 4 * d), b + "mlp.fc2.bias": (d,),
        }  # fmt: skip
    return out


def hf_dinov2_names(d: int, depth: int, registers: int = 0, grid: int = 37) -> Shapes:
    """``facebook/dinov2-*`` ``model.safetensors`` (convert_dinov2_to_hf.py names)."""
    out: Shapes = {
        "embeddings.cls_token": (1, 1, d),
        "embeddings.mask_token": (1, d),
        "embeddings.position_embeddings": (1, 1 + grid * grid, d),
        "embeddings.patch_embeddings.projection.weight": (d, 3, 14, 14),
        "embeddings.patch_embeddings.projection.bias": (d,),
        "layernorm.weight": (d,),
        "layernorm.bias": (d,),
    }
    if registers:
        out["embeddings.register_tokens"] = (1, registers, d)
    for i in range(depth):
        b = f"encoder.layer.{i}."
        for proj in ("query", "key", "value"):
            out[f"{b}attention.attention.{proj}.weight"] = (d, d)
            out[f"{b}attention.attention.{proj}.bias"] = (d,)
        out |= {
            b + "attention.output.dense.weight": (d, d), b + "attention.output.dense.bias": (d,),
            b + "layer_scale1.lambda1": (d,), b + "layer_scale2.lambda1": (d,),
            b + "norm1.weight": (d,), b + "norm1.bias": (d,),
            b + "norm2.weight": (d,), b + "norm2.bias": (d,),
            b + "mlp.fc1.weight": (4 * d, d), b + "mlp.fc1.bias": (4 * d,),
            b + "mlp.fc2.weight": (d, 4 * d), b + "mlp.fc2.bias": (d,),
        }  # fmt: skip
    return out


def hub_depth_names(variant: str) -> Shapes:
    """``depth_anything_v2_[metric_*_]vit*.pth``: DINOv2 under ``pretrained.``, DPTHead."""
    d, depth = {"small": (384, 12), "base": (768, 12), "large": (1024, 24)}[variant]
    f = {"small": 64, "base": 128, "large": 256}[variant]
    oc = {"small": (48, 96, 192, 384), "base": (96, 192, 384, 768)}.get(
        variant, (256, 512, 1024, 1024)
    )
    out = {f"pretrained.{k}": v for k, v in hub_dinov2_names(d, depth).items()}
    h = "depth_head."
    for i in range(4):
        out[f"{h}projects.{i}.weight"] = (oc[i], d, 1, 1)
        out[f"{h}projects.{i}.bias"] = (oc[i],)
        out[f"{h}scratch.layer{i + 1}_rn.weight"] = (f, oc[i], 3, 3)
    out |= {
        h + "resize_layers.0.weight": (oc[0], oc[0], 4, 4), h + "resize_layers.0.bias": (oc[0],),
        h + "resize_layers.1.weight": (oc[1], oc[1], 2, 2), h + "resize_layers.1.bias": (oc[1],),
        h + "resize_layers.3.weight": (oc[3], oc[3], 3, 3), h + "resize_layers.3.bias": (oc[3],),
        h + "scratch.output_conv1.weight": (f // 2, f, 3, 3),
        h + "scratch.output_conv1.bias": (f // 2,),
        h + "scratch.output_conv2.0.weight": (32, f // 2, 3, 3),
        h + "scratch.output_conv2.0.bias": (32,),
        h + "scratch.output_conv2.2.weight": (1, 32, 1, 1),
        h + "scratch.output_conv2.2.bias": (1,),
    }  # fmt: skip
    for r in range(1, 5):
        out[f"{h}scratch.refinenet{r}.out_conv.weight"] = (f, f, 1, 1)
        out[f"{h}scratch.refinenet{r}.out_conv.bias"] = (f,)
        for unit in (1, 2):
            for conv in (1, 2):
                out[f"{h}scratch.refinenet{r}.resConfUnit{unit}.conv{conv}.weight"] = (f, f, 3, 3)
                out[f"{h}scratch.refinenet{r}.resConfUnit{unit}.conv{conv}.bias"] = (f,)
    return out


def hf_depth_names(variant: str) -> Shapes:
    """``depth-anything/Depth-Anything-V2-*-hf`` (convert_depth_anything_to_hf.py names)."""
    hub = hub_depth_names(variant)
    d = hub["pretrained.cls_token"][-1]
    depth = 24 if variant == "large" else 12
    out = {f"backbone.{k}": v for k, v in hf_dinov2_names(d, depth).items()}
    for i in range(4):
        out[f"neck.reassemble_stage.layers.{i}.projection.weight"] = hub[
            f"depth_head.projects.{i}.weight"
        ]
        out[f"neck.reassemble_stage.layers.{i}.projection.bias"] = hub[
            f"depth_head.projects.{i}.bias"
        ]
        if i != 2:
            for k in ("weight", "bias"):
                out[f"neck.reassemble_stage.layers.{i}.resize.{k}"] = hub[
                    f"depth_head.resize_layers.{i}.{k}"
                ]
        out[f"neck.convs.{i}.weight"] = hub[f"depth_head.scratch.layer{i + 1}_rn.weight"]
    for r, j in {1: 3, 2: 2, 3: 1, 4: 0}.items():  # the converter's "tricky" order
        src, dst = f"depth_head.scratch.refinenet{r}.", f"neck.fusion_stage.layers.{j}."
        for k in ("weight", "bias"):
            out[f"{dst}projection.{k}"] = hub[f"{src}out_conv.{k}"]
            for unit in (1, 2):
                for conv in (1, 2):
                    out[f"{dst}residual_layer{unit}.convolution{conv}.{k}"] = hub[
                        f"{src}resConfUnit{unit}.conv{conv}.{k}"
                    ]
    for k in ("weight", "bias"):
        out[f"head.conv1.{k}"] = hub[f"depth_head.scratch.output_conv1.{k}"]
        out[f"head.conv2.{k}"] = hub[f"depth_head.scratch.output_conv2.0.{k}"]
        out[f"head.conv3.{k}"] = hub[f"depth_head.scratch.output_conv2.2.{k}"]
    return out


def _random(shapes: Shapes, seed: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v, generator=gen) * 0.02 for k, v in shapes.items()}


def _shapes(state: Any) -> Shapes:
    return {k: tuple(v.shape) for k, v in state.items()}


# --- the package's tables and mappings against the real names, every size --------------------


@pytest.mark.parametrize("backbone_id", sorted(BACKBONE_SPECS))
def test_dinov2_tables_and_mapping_cover_transformers_exactly(backbone_id: str) -> None:
    spec = BACKBONE_SPECS[backbone_id]
    real = hub_dinov2_names(spec.hidden_size, spec.num_layers, spec.num_registers)
    assert dinov2_original_shapes(spec) == real
    with torch.device("meta"):
        model = dinov2_model(dinov2_config(backbone_id))
        mapped = dinov2_original_to_hf(
            {k: torch.empty(v) for k, v in real.items()}, set(model.state_dict())
        )
    assert _shapes(mapped) == _shapes(model.state_dict()), "no missing / unexpected keys"


@pytest.mark.parametrize("variant", sorted(DEPTH_SPECS))
def test_depth_anything_tables_and_mapping_cover_transformers_exactly(variant: str) -> None:
    real = hub_depth_names(variant)
    assert depth_anything_original_shapes(variant) == real
    with torch.device("meta"):
        model = transformers.DepthAnythingForDepthEstimation(depth_anything_config(variant))
        mapped = depth_original_to_hf(
            {k: torch.empty(v) for k, v in real.items()}, set(model.state_dict())
        )
    assert _shapes(mapped) == _shapes(model.state_dict())
    # transformers saves its checkpoints under the converter's names (old attention names).
    assert set(hf_depth_names(variant)) == {
        k.replace("attention.q_proj", "attention.attention.query")
        .replace("attention.k_proj", "attention.attention.key")
        .replace("attention.v_proj", "attention.attention.value")
        .replace("attention.o_proj", "attention.output.dense")
        for k in model.state_dict()
    }


# --- full ViT-S files: load, values land where upstream put them ----------------------------


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-valued files named and shaped as the official downloads."""
    root = tmp_path_factory.mktemp("official")
    files: dict[str, Path] = {}
    hub = _random(hub_dinov2_names(384, 12), seed=1)
    files["hub"] = root / "dinov2_vits14_pretrain.pth"
    torch.save(hub, files["hub"])
    files["hub_reg"] = root / "dinov2_vits14_reg4_pretrain.pth"
    torch.save(_random(hub_dinov2_names(384, 12, registers=4), seed=2), files["hub_reg"])
    # The HF file of the same network: q/k/v are the rows of qkv, as the converter splits them.
    hf = {}
    for name in hf_dinov2_names(384, 12):
        src = (
            name.replace("embeddings.position_embeddings", "pos_embed")
            .replace("embeddings.patch_embeddings.projection", "patch_embed.proj")
            .replace("embeddings.", "")
            .replace("layernorm", "norm")
            .replace("encoder.layer.", "blocks.")
            .replace("attention.output.dense", "attn.proj")
            .replace("layer_scale1.lambda1", "ls1.gamma")
            .replace("layer_scale2.lambda1", "ls2.gamma")
        )
        for i, proj in enumerate(("query", "key", "value")):
            if f"attention.attention.{proj}" in src:
                qkv = src.replace(f"attention.attention.{proj}", "attn.qkv")
                src, rows = qkv, slice(384 * i, 384 * (i + 1))
                hf[name] = hub[src][rows].clone()
                break
        else:
            hf[name] = hub[src].clone()
    files["hf_file"] = root / "model.safetensors"
    safetensors_torch.save_file(hf, files["hf_file"], metadata={"format": "pt"})
    hf_dir = root / "dinov2-small"
    hf_dir.mkdir()
    safetensors_torch.save_file(hf, hf_dir / "model.safetensors", metadata={"format": "pt"})
    dinov2_config("dinov2_vits14").to_json_file(str(hf_dir / "config.json"))
    files["hf_dir"] = hf_dir
    files["depth"] = root / "depth_anything_v2_vits.pth"
    torch.save(_random(hub_depth_names("small"), seed=3), files["depth"])
    files["depth_metric"] = root / "depth_anything_v2_metric_vkitti_vits.pth"
    torch.save(_random(hub_depth_names("small"), seed=4), files["depth_metric"])
    files["depth_hf"] = root / "da-v2-small-hf.safetensors"
    safetensors_torch.save_file(_random(hf_depth_names("small"), seed=5), files["depth_hf"])
    return files


def test_hub_dinov2_pth_loads_with_every_tensor_in_place(official: dict[str, Path]) -> None:
    hub = torch.load(official["hub"], weights_only=True)
    model = load_dinov2(official["hub"], "dinov2_vits14")
    got = model.state_dict()
    layer = model.encoder.layer[5].attention
    q = getattr(layer, "q_proj", None) or layer.attention.query
    assert torch.equal(q.weight, hub["blocks.5.attn.qkv.weight"][:384])
    assert torch.equal(got["embeddings.position_embeddings"], hub["pos_embed"])
    assert torch.equal(got["encoder.layer.11.layer_scale2.lambda1"], hub["blocks.11.ls2.gamma"])
    tokens = DinoBackbone(model)(torch.rand(1, 3, 56, 70))
    assert tuple(tokens.shape) == (1, 4, 5, 384)


def test_hf_safetensors_file_and_directory_load_the_same_network(
    official: dict[str, Path],
) -> None:
    ref = load_dinov2(official["hub"]).state_dict()
    for source in (official["hf_file"], official["hf_dir"]):
        got = load_dinov2(source, "dinov2_vits14").state_dict()
        assert set(got) == set(ref)
        assert all(torch.equal(got[k], ref[k]) for k in ref), source


def test_register_model_loads_and_skips_its_registers(official: dict[str, Path]) -> None:
    model = load_dinov2(official["hub_reg"], "dinov2_vits14_reg")
    assert type(model).__name__ == "Dinov2WithRegistersModel"
    hub = torch.load(official["hub_reg"], weights_only=True)
    assert torch.equal(model.state_dict()["embeddings.register_tokens"], hub["register_tokens"])
    backbone = DinoBackbone(model)
    assert backbone.num_registers == 4
    assert tuple(backbone(torch.rand(1, 3, 56, 56)).shape) == (1, 4, 4, 384)
    with pytest.raises(WeightsError, match="holds dinov2_vits14_reg, expected dinov2_vits14"):
        load_dinov2(official["hub_reg"], "dinov2_vits14")


def test_depth_anything_pth_and_hf_safetensors_load(official: dict[str, Path]) -> None:
    hub = torch.load(official["depth"], weights_only=True)
    model = load_depth_anything(official["depth"], "small")
    got = model.state_dict()
    # refinenet4 (deepest) is transformers' fusion layer 0.
    assert torch.equal(
        got["neck.fusion_stage.layers.0.projection.weight"],
        hub["depth_head.scratch.refinenet4.out_conv.weight"],
    )
    assert torch.equal(got["head.conv3.weight"], hub["depth_head.scratch.output_conv2.2.weight"])
    hf = safetensors_torch.load_file(official["depth_hf"])
    got_hf = load_depth_anything(official["depth_hf"], "small", metric=True).state_dict()
    assert torch.equal(
        got_hf["neck.fusion_stage.layers.2.residual_layer1.convolution2.weight"],
        hf["neck.fusion_stage.layers.2.residual_layer1.convolution2.weight"],
    )
    with pytest.raises(WeightsError, match=r"holds Depth Anything V2 Small.*variant 'base'"):
        load_depth_anything(official["depth"], "base")


# --- cvgl-ros weights check ------------------------------------------------------------------


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(["weights", "check", *args])
    return rc, capsys.readouterr().out


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("hub", "DINOv2 ViT-S/14 torch hub .pth"),
        ("hub_reg", "DINOv2 ViT-S/14 with 4 registers torch hub .pth"),
        ("hf_file", "DINOv2 ViT-S/14 HF safetensors"),
        ("hf_dir", "DINOv2 ViT-S/14 HF directory"),
        ("depth", "Depth Anything V2 Small .pth"),
        ("depth_metric", "Depth Anything V2 Small .pth"),
        ("depth_hf", "Depth Anything V2 Small HF safetensors"),
    ],
)
def test_weights_check_names_each_official_format(
    official: dict[str, Path], capsys: pytest.CaptureFixture[str], key: str, expected: str
) -> None:
    rc, out = _check(capsys, str(official[key]))
    assert rc == 0, out
    assert f": {expected}" in out.splitlines()[0]
    if key.startswith("depth"):
        assert "dinov2_vits14 taps (3, 6, 9, 12)" in out and "variant: small" in out
    else:
        assert "width 384, 12 layers, 6 heads" in out and "position grid 37x37" in out
    if key == "depth_metric":
        assert "metric (vkitti: depth.model.metric: true, max_depth_m: 80)" in out
    if key == "hub":
        assert "(22.06 M parameters)" in out  # DINOv2 ViT-S/14: 22.06 M


def test_weights_check_names_a_matcher_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cvgl_ros.models.checkpoint import (
        HeadConfig,
        MatcherCheckpointConfig,
        save_matcher_checkpoint,
    )
    from cvgl_ros.models.networks import random_checkpoint_tensors

    cfg = MatcherCheckpointConfig(head=HeadConfig(hidden_dim=64, out_dim=32))
    tensors = random_checkpoint_tensors(cfg)
    weights, _ = save_matcher_checkpoint(tmp_path / "ck", cfg, tensors)
    for path in (tmp_path / "ck", weights):
        rc, out = _check(capsys, str(path), "--expect", "matcher")
        assert rc == 0, out
        assert "cvgl_ros matching head checkpoint" in out and "hidden 64, out 32" in out
    # A tensor the JSON's head does not have: refused (the head shapes come from the JSON).
    bad = dict(tensors)
    bad["head.proj.weight"] = bad["head.proj.weight"][:16]
    save_matcher_checkpoint(tmp_path / "bad", cfg, bad)
    rc, out = _check(capsys, str(tmp_path / "bad"))
    assert rc == 2 and "head.proj.weight is (16, 64)" in out


def _one_line_refusal(rc: int, out: str, *needles: str) -> None:
    assert rc == 2, out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out, out
    for needle in needles:
        assert needle in out, out


def test_weights_check_refuses_mismatches_in_one_line(
    official: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = torch.load(official["hub"], weights_only=True)
    unknown = tmp_path / "unknown.pth"
    torch.save({**hub, "blocks.3.attn.extra.weight": torch.zeros(2)}, unknown)
    _one_line_refusal(
        *_check(capsys, str(unknown)), "1 unknown tensor(s): blocks.3.attn.extra.weight"
    )
    extra = tmp_path / "extra_norm.pth"
    torch.save({**hub, "head.weight": torch.zeros(2)}, extra)
    _one_line_refusal(*_check(capsys, str(extra)), "unknown tensor(s): head.weight")
    wrong = tmp_path / "wrong.pth"
    torch.save({**hub, "blocks.0.mlp.fc1.weight": torch.zeros(1000, 384)}, wrong)
    _one_line_refusal(
        *_check(capsys, str(wrong)), "blocks.0.mlp.fc1.weight is (1000, 384)", "(1536, 384)"
    )
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in hub.items() if k != "blocks.7.ls1.gamma"}, missing)
    _one_line_refusal(*_check(capsys, str(missing)), "1 missing tensor(s): blocks.7.ls1.gamma")
    for key in ("hub", "hf_file"):
        truncated = tmp_path / f"truncated_{official[key].name}"
        truncated.write_bytes(official[key].read_bytes()[: 1 << 20])
        _one_line_refusal(*_check(capsys, str(truncated)), "not a readable")
    _one_line_refusal(
        *_check(capsys, str(official["depth"]), "--expect", "backbone"),
        "is a Depth Anything V2 Small .pth (depth), but a backbone was expected",
    )
    _one_line_refusal(
        *_check(capsys, str(official["hub"]), "--expect", "depth"), "but a depth was expected"
    )
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, foreign)
    _one_line_refusal(*_check(capsys, str(foreign)), "not a DINOv2, Depth Anything V2")
    _one_line_refusal(*_check(capsys, str(tmp_path / "nope.pth")), "no such file")
    half = tmp_path / "half_qkv.safetensors"
    hf = safetensors_torch.load_file(official["hf_file"])
    del hf["encoder.layer.2.attention.attention.key.weight"]
    safetensors_torch.save_file(hf, half)
    _one_line_refusal(*_check(capsys, str(half)), "layer 2 attention weight lacks its k")


def test_hf_directory_config_says_metric_or_relative(
    official: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "Depth-Anything-V2-Metric-Outdoor-Small-hf"
    directory.mkdir()
    (directory / "model.safetensors").write_bytes(official["depth_hf"].read_bytes())
    cfg = depth_anything_config("small", metric=True, max_depth_m=80.0)
    cfg.to_json_file(str(directory / "config.json"))
    assert json.loads((directory / "config.json").read_text())["depth_estimation_type"] == "metric"
    rc, out = _check(capsys, str(directory))
    assert rc == 0 and "HF directory" in out and "metric (config.json" in out
    info = identify_weights(directory, expect="depth")
    assert info.kind == "depth"
