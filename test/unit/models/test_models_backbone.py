"""DINOv2 backbone: explicit architectures, both weight forms, patch-token grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cvgl_ros.models import backbone as bb  # noqa: E402
from cvgl_ros.models.errors import WeightsError  # noqa: E402
from cvgl_ros.models.networks import torch_dinov2_random  # noqa: E402
from cvgl_ros.models.preprocess import prepare_image  # noqa: E402

torch.set_num_threads(2)


def _randomise(model: object, seed: int) -> None:
    """Every tensor random (including LayerScale, norms, tokens) so a mix-up would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.state_dict().values():  # type: ignore[attr-defined]
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


def _assert_same_tensors(a: object, b: object) -> None:
    sa, sb = a.state_dict(), b.state_dict()  # type: ignore[attr-defined]
    assert set(sa) == set(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_vit_s_true_sizes_and_token_grid() -> None:
    config = bb.dinov2_config("dinov2_vits14")
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (
        384,
        12,
        6,
    )
    assert config.mlp_ratio == 4 and config.patch_size == 14
    model = torch_dinov2_random("dinov2_vits14")
    n_params = sum(p.numel() for p in model.parameters())
    assert 21.5e6 < n_params < 22.5e6  # ViT-S/14 has ~22.06 M parameters
    net = bb.DinoBackbone(model).eval()
    with torch.no_grad():
        tokens = net(torch.rand(1, 3, 112, 154))
    assert tuple(tokens.shape) == (1, 8, 11, 384)


@pytest.mark.parametrize(
    ("backbone_id", "dims"),
    [("dinov2_vitb14", (768, 12, 12)), ("dinov2_vitl14", (1024, 24, 16))],
)
def test_b_and_l_configs_are_explicit(backbone_id: str, dims: tuple[int, int, int]) -> None:
    c = bb.dinov2_config(backbone_id)
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == dims


def test_round_to_patch() -> None:
    assert [bb.round_to_patch(s) for s in (1, 14, 20, 21, 224, 230, 518)] == [
        14, 14, 14, 28, 224, 224, 518,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="size_px"):
        bb.round_to_patch(0)


def test_backbone_rejects_sizes_not_multiple_of_14() -> None:
    net = bb.DinoBackbone(torch_dinov2_random(num_layers=1))
    with pytest.raises(ValueError, match="multiple of 14"):
        net(torch.rand(1, 3, 100, 112))


def test_imagenet_normalisation_is_applied() -> None:
    model = torch_dinov2_random(num_layers=1)
    net = bb.DinoBackbone(model).eval()
    x = torch.rand(1, 3, 28, 28)
    with torch.no_grad():
        expected = model(
            pixel_values=(x - torch.tensor(bb.IMAGENET_MEAN).view(1, 3, 1, 1))
            / torch.tensor(bb.IMAGENET_STD).view(1, 3, 1, 1)
        ).last_hidden_state[:, 1:]
        got = net(x).reshape(1, 4, 384)
    torch.testing.assert_close(got, expected)


def test_hf_directory_round_trip(tmp_path: Path) -> None:
    model = torch_dinov2_random(num_layers=2)
    _randomise(model, 1)
    model.save_pretrained(tmp_path / "dinov2-small")
    loaded = bb.load_dinov2(tmp_path / "dinov2-small", "dinov2_vits14")
    _assert_same_tensors(model, loaded)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_original_pth_round_trip(tmp_path: Path) -> None:
    model = torch_dinov2_random(num_layers=2)
    _randomise(model, 2)
    original = bb.dinov2_hf_to_original(model.state_dict())
    assert original["blocks.1.attn.qkv.weight"].shape == (3 * 384, 384)
    assert "blocks.0.ls1.gamma" in original and "pos_embed" in original
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(original, path)
    loaded = bb.load_dinov2(path, "dinov2_vits14")
    _assert_same_tensors(model, loaded)
    x = torch.rand(1, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(
            model(pixel_values=x).last_hidden_state, loaded(pixel_values=x).last_hidden_state
        )


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        bb.load_dinov2(tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"config\.json"):
        bb.load_dinov2(tmp_path)
    model = torch_dinov2_random(num_layers=1)
    path = tmp_path / "w.pth"
    torch.save(bb.dinov2_hf_to_original(model.state_dict()), path)
    with pytest.raises(WeightsError, match="expected dinov2_vitb14"):
        bb.load_dinov2(path, "dinov2_vitb14")
    bad = bb.dinov2_hf_to_original(model.state_dict())
    bad["blocks.0.attn.extra"] = torch.zeros(1)
    torch.save(bad, path)
    with pytest.raises(WeightsError, match="unexpected key"):
        bb.load_dinov2(path)


def test_prepare_image_scales_and_resizes() -> None:
    img = np.full((50, 70, 3), 255, np.uint8)
    x = prepare_image(img, (28, 42))
    assert x.shape == (1, 3, 28, 42) and x.dtype == np.float32
    np.testing.assert_allclose(x, 1.0)
    with pytest.raises(ValueError, match="uint8"):
        prepare_image(img.astype(np.float32), (28, 28))
