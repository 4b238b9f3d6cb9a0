"""Projection head, dual-softmax invariants, checkpoint format, learned matcher plumbing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cvgl_ros.backends.base import open_backend  # noqa: E402
from cvgl_ros.core.interfaces import Matcher  # noqa: E402
from cvgl_ros.core.types import AerialPatch  # noqa: E402
from cvgl_ros.models.checkpoint import (  # noqa: E402
    HeadConfig,
    MatcherCheckpointConfig,
    load_matcher_checkpoint,
    save_matcher_checkpoint,
)
from cvgl_ros.models.config import LearnedMatcherConfig  # noqa: E402
from cvgl_ros.models.errors import CheckpointError  # noqa: E402
from cvgl_ros.models.head import DualSoftmaxMatcher, ProjectionHead  # noqa: E402
from cvgl_ros.models.learned import LearnedMatcher  # noqa: E402
from cvgl_ros.models.matching import dual_softmax, select_matches, token_centers_px  # noqa: E402
from cvgl_ros.models.networks import FeaturesNetwork, random_checkpoint_tensors  # noqa: E402

torch.set_num_threads(2)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_head_output_shape_and_unit_norm() -> None:
    head = ProjectionHead(HeadConfig(in_dim=384, hidden_dim=64, out_dim=32, num_heads=4)).eval()
    with torch.no_grad():
        out = head(torch.randn(2, 5, 7, 384))
    assert tuple(out.shape) == (2, 5, 7, 32)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 5, 7))


@pytest.mark.parametrize("seed", range(5))
def test_dual_softmax_rows_and_columns_sum_at_most_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = _unit(rng.standard_normal((int(rng.integers(1, 40)), 16)))
    b = _unit(rng.standard_normal((int(rng.integers(1, 40)), 16)))
    temperature, dustbin = float(rng.uniform(0.02, 1.0)), float(rng.uniform(-3, 3))
    p = dual_softmax(a, b, temperature, dustbin)
    assert p.shape == (len(a), len(b))
    assert np.all(p >= 0.0)
    assert np.all(p.sum(axis=1) <= 1.0 + 1e-6) and np.all(p.sum(axis=0) <= 1.0 + 1e-6)
    # The torch module computes the same thing.
    from cvgl_ros.models.checkpoint import DualSoftmaxConfig

    m = DualSoftmaxMatcher(DualSoftmaxConfig(temperature=temperature, dustbin_score=dustbin))
    with torch.no_grad():
        pt = m(torch.from_numpy(a)[None], torch.from_numpy(b)[None])[0].numpy()
    np.testing.assert_allclose(pt, p, atol=1e-5)


def test_dustbin_takes_unmatched_points() -> None:
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.standard_normal((16, 16)))[0].T.astype(np.float32)
    b = basis[:5]  # five orthonormal descriptors
    a = np.concatenate([b[[2, 0, 4]], basis[10:12]])  # three true matches, two with none
    p = dual_softmax(a, b, temperature=0.1, dustbin_score=2.0)
    assert np.all(p[:3].sum(axis=1) > 0.9)
    assert np.all(p[3:].sum(axis=1) < 0.05), "unmatched points go to the dustbin"
    ia, ib, prob = select_matches(p, top_k=10, mutual=True, min_probability=0.5)
    assert sorted(zip(ia.tolist(), ib.tolist(), strict=True)) == [(0, 2), (1, 0), (2, 4)]
    assert np.all(prob > 0.5)


def test_select_matches_top_k_ordering_and_mutual() -> None:
    p = np.array(
        [[0.9, 0.05, 0.0], [0.8, 0.1, 0.0], [0.0, 0.3, 0.6], [0.0, 0.2, 0.1]], dtype=np.float32
    )
    ia, ib, prob = select_matches(p, top_k=10, mutual=False)
    assert np.all(np.diff(prob) <= 0)
    assert len(prob) == np.count_nonzero(p)
    ia, ib, prob = select_matches(p, top_k=10, mutual=True)
    # (1, 0) loses column 0 to (0, 0); (3, 1) loses column 1 to (2, 1).
    assert list(zip(ia.tolist(), ib.tolist(), strict=True)) == [(0, 0), (2, 2)]
    np.testing.assert_allclose(prob, [0.9, 0.6])
    ia, ib, prob = select_matches(p, top_k=1, mutual=True)
    assert list(ia) == [0]
    assert len(select_matches(p, top_k=10, mutual=True, min_probability=0.7)[0]) == 1
    assert len(select_matches(np.zeros((0, 3)), 5)[0]) == 0
    with pytest.raises(ValueError, match="top_k"):
        select_matches(p, top_k=0)


def test_token_centers_map_to_original_pixels() -> None:
    pts = token_centers_px((2, 3), (28, 42), (56, 84))
    assert pts.shape == (6, 2)
    # Token (0, 0) covers input pixels [0, 14); centre 7 -> original continuous 14 -> index 13.5
    np.testing.assert_allclose(pts[0], [13.5, 13.5])
    np.testing.assert_allclose(pts[5], [(2.5 * 14) * 2 - 0.5, (1.5 * 14) * 2 - 0.5])


def test_checkpoint_round_trip_every_tensor(tmp_path: Path) -> None:
    cfg = MatcherCheckpointConfig(
        head=HeadConfig(hidden_dim=64, out_dim=32),
        ground_size_px=(112, 168),
        aerial_size_px=(140, 140),
        metadata={"epoch": 3},
    )
    tensors = random_checkpoint_tensors(cfg, seed=5)
    weights, js = save_matcher_checkpoint(tmp_path / "ck", cfg, tensors)
    assert weights.name == "ck.safetensors" and js.name == "ck.json"
    data = json.loads(js.read_text())
    assert data["version"] == 1 and data["backbone_id"] == "dinov2_vits14"
    loaded = load_matcher_checkpoint(weights)
    assert loaded.config == cfg
    assert set(loaded.tensors) == set(tensors)
    for k, v in tensors.items():
        np.testing.assert_array_equal(loaded.tensors[k], v)
        assert loaded.tensors[k].shape == v.shape
    assert loaded.temperature == pytest.approx(0.1, rel=1e-6)
    # The JSON is embedded too: a lone .safetensors still loads.
    js.unlink()
    assert load_matcher_checkpoint(weights).config == cfg


def test_checkpoint_errors(tmp_path: Path) -> None:
    cfg = MatcherCheckpointConfig(head=HeadConfig(hidden_dim=64, out_dim=32))
    tensors = random_checkpoint_tensors(cfg)
    with pytest.raises(CheckpointError, match="not found"):
        load_matcher_checkpoint(tmp_path / "none.safetensors")
    with pytest.raises(CheckpointError, match="head"):
        save_matcher_checkpoint(tmp_path / "x", cfg, {**tensors, "backbone.w": np.zeros(1)})
    _, js = save_matcher_checkpoint(tmp_path, cfg, tensors)
    data = json.loads(js.read_text())
    js.write_text(json.dumps({**data, "surprise": 1}))
    with pytest.raises(CheckpointError, match="unknown"):
        load_matcher_checkpoint(tmp_path)
    js.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(CheckpointError, match="version"):
        load_matcher_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="in_dim"):
        MatcherCheckpointConfig(backbone_id="dinov2_vitb14")
    with pytest.raises(ValueError, match="multiples of 14"):
        MatcherCheckpointConfig(ground_size_px=(100, 112))


@pytest.fixture(scope="module")
def tiny_matcher(tmp_path_factory: pytest.TempPathFactory) -> LearnedMatcher:
    cfg = MatcherCheckpointConfig(
        head=HeadConfig(hidden_dim=64, out_dim=32), ground_size_px=(112, 112),
        aerial_size_px=(112, 112),
    )  # fmt: skip
    path = tmp_path_factory.mktemp("ck")
    save_matcher_checkpoint(path, cfg, random_checkpoint_tensors(cfg, seed=1))
    checkpoint = load_matcher_checkpoint(path)
    torch.manual_seed(0)
    net = FeaturesNetwork.from_checkpoint(checkpoint, None, num_layers=2)
    backend = open_backend("torch", net, input_names=("images",), output_names=("descriptors",))
    return LearnedMatcher(backend, backend, checkpoint, LearnedMatcherConfig(top_k=40))


def test_learned_matcher_matches_identical_views(tiny_matcher: LearnedMatcher) -> None:
    assert isinstance(tiny_matcher, Matcher)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
    patch = AerialPatch(img, 0.5, 10.0, 20.0, np.ones((224, 224), bool), "t")
    corr = tiny_matcher.match(img, patch)
    assert 0 < len(corr) <= 40
    assert np.all((corr.weights >= 0) & (corr.weights <= 1)) and np.all(np.diff(corr.weights) <= 0)
    same = np.all(np.isclose(corr.ground_px, corr.aerial_px), axis=1)
    assert same.mean() > 0.9, "identical images match token to token"
    assert corr.aerial_px.min() >= 0 and corr.aerial_px.max() < 224


def test_learned_matcher_caches_aerial_and_respects_mask(tiny_matcher: LearnedMatcher) -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
    valid = np.zeros((224, 224), bool)
    valid[:, 112:] = True
    patch = AerialPatch(img, 0.5, 11.0, 20.0, valid, "t")
    before = dict(tiny_matcher.cache.stats())
    first = tiny_matcher.match(img, patch)
    second = tiny_matcher.match(img[::-1].copy(), patch)
    stats = tiny_matcher.cache.stats()
    assert stats["misses"] == before["misses"] + 1 and stats["hits"] == before["hits"] + 1
    assert first.aerial_px[:, 0].min() > 112 and second.aerial_px[:, 0].min() > 112
    empty = AerialPatch(img, 0.5, 12.0, 20.0, np.zeros((224, 224), bool), "t")
    assert len(tiny_matcher.match(img, empty)) == 0


@pytest.mark.slow
def test_learned_matcher_onnxruntime_equals_torch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from cvgl_ros.models.networks import torch_dinov2_random
    from cvgl_ros.tools.export import ExportSpec, export_onnx

    cfg = MatcherCheckpointConfig(
        head=HeadConfig(hidden_dim=64, out_dim=32), ground_size_px=(84, 112),
        aerial_size_px=(112, 112),
    )  # fmt: skip
    save_matcher_checkpoint(tmp_path / "ck", cfg, random_checkpoint_tensors(cfg, seed=2))
    torch.manual_seed(3)
    torch_dinov2_random(num_layers=2).save_pretrained(tmp_path / "dino")
    torch_cfg = LearnedMatcherConfig(
        checkpoint_path=str(tmp_path / "ck.safetensors"),
        backbone_weights_path=str(tmp_path / "dino"),
        top_k=30,
    )
    torch_matcher = LearnedMatcher.from_config(torch_cfg)
    net = torch_matcher._ground.module  # type: ignore[attr-defined]
    for stem, (h, w) in (("matcher_ground", (84, 112)), ("matcher_aerial", (112, 112))):
        spec = ExportSpec(net, {"images": np.zeros((1, 3, h, w), np.float32)}, ("descriptors",))
        export_onnx(spec, tmp_path / "engines" / f"{stem}.onnx")
    ort_matcher = LearnedMatcher.from_config(
        LearnedMatcherConfig(
            checkpoint_path=str(tmp_path / "ck.safetensors"),
            backend="onnxruntime",
            engine_dir=str(tmp_path / "engines"),
            top_k=30,
        )
    )
    rng = np.random.default_rng(4)
    ground = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    aerial = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    patch = AerialPatch(aerial, 0.5, 1.0, 2.0, np.ones((200, 200), bool), "t")
    a = torch_matcher.match(ground, patch)
    b = ort_matcher.match(ground, patch)
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-3, atol=1e-6)
    np.testing.assert_array_equal(a.ground_px, b.ground_px)
    np.testing.assert_array_equal(a.aerial_px, b.aerial_px)
    # backend "auto" (the default) picks ONNX Runtime because the exported files exist.
    from cvgl_ros.backends.ort_backend import OrtBackend

    auto_cfg = LearnedMatcherConfig(
        checkpoint_path=str(tmp_path / "ck.safetensors"),
        engine_dir=str(tmp_path / "engines"),
        top_k=30,
    )
    auto_matcher = LearnedMatcher.from_config(auto_cfg)
    assert isinstance(auto_matcher._ground, OrtBackend)
    c = auto_matcher.match(ground, patch)
    np.testing.assert_array_equal(c.ground_px, b.ground_px)
    np.testing.assert_array_equal(c.aerial_px, b.aerial_px)
    # INT8 copies: descriptors stay close to the float32 ones.
    from dataclasses import replace

    int8_matcher = LearnedMatcher.from_config(replace(auto_cfg, int8=True))
    assert (tmp_path / "engines" / "matcher_ground.int8.onnx").is_file()
    x = {"images": np.random.default_rng(5).random((1, 3, 84, 112), dtype=np.float32)}
    ref = ort_matcher._ground.run(x)["descriptors"]
    got = int8_matcher._ground.run(x)["descriptors"]
    assert float((ref * got).sum(-1).min()) > 0.9
    assert len(int8_matcher.match(ground, patch)) > 0
    for m in (torch_matcher, ort_matcher, auto_matcher, int8_matcher):
        m.close()


def test_learned_matcher_from_config_errors(tmp_path: Path) -> None:
    from cvgl_ros.models import MatcherConfig, build_matcher
    from cvgl_ros.models.errors import WeightsError

    with pytest.raises(CheckpointError, match="not found"):
        build_matcher(MatcherConfig(kind="learned", learned=LearnedMatcherConfig(
            checkpoint_path=str(tmp_path / "none.safetensors"))))  # fmt: skip
    cfg = MatcherCheckpointConfig(head=HeadConfig(hidden_dim=64, out_dim=32))
    save_matcher_checkpoint(tmp_path / "ck", cfg, random_checkpoint_tensors(cfg))
    with pytest.raises(WeightsError, match="backbone_weights_path"):
        LearnedMatcher.from_config(LearnedMatcherConfig(checkpoint_path=str(tmp_path / "ck")))
    with pytest.raises(WeightsError, match="not found"):
        LearnedMatcher.from_config(
            LearnedMatcherConfig(
                checkpoint_path=str(tmp_path / "ck"), backbone_weights_path=str(tmp_path / "no")
            )
        )
    from cvgl_ros.backends.errors import BackendError

    with pytest.raises(BackendError, match="cvgl-ros export"):
        LearnedMatcher.from_config(
            LearnedMatcherConfig(
                checkpoint_path=str(tmp_path / "ck"),
                backend="onnxruntime",
                engine_dir=str(tmp_path / "engines"),
            )
        )
