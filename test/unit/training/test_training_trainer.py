"""End to end on CPU: a tiny training run through the CLI, its checkpoint in the node's
matcher and through the Localizer, gradients reaching the head, resume."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from cvgl_ros.models.checkpoint import DualSoftmaxConfig, HeadConfig  # noqa: E402
from cvgl_ros.training.cache import collate  # noqa: E402
from cvgl_ros.training.config import LossConfig, OptimConfig  # noqa: E402
from cvgl_ros.training.model import TrainableMatcher  # noqa: E402
from cvgl_ros.training.step import compute_losses  # noqa: E402

torch.set_num_threads(2)

HEAD = {"in_dim": 384, "hidden_dim": 64, "out_dim": 32, "num_conv_layers": 1, "num_heads": 4}

CONFIG = """
output_dir: {out}
seed: 0
device: cpu
num_threads: 2
model:
  backbone_id: dinov2_vits14
  backbone_weights: {backbone}
  head: {head}
  ground_size_px: [84, 84]
  aerial_size_px: [126, 126]
train_data:
  kind: synthetic
  synthetic: &synth
    orthophotos: [{ortho}]
    num_samples: 16
    seed: 1
    image_size_px: [84, 84]
    hfov_deg: 60.0
    altitude_range_m: [40.0, 50.0]
    yaw_range_deg: 20.0
    max_offset_m: 10.0
    aerial_size_px: 126
    aerial_m_per_px: 0.6
    world_size_px: 448
val_data:
  kind: synthetic
  synthetic:
    <<: *synth
    num_samples: 4
    seed: 2
loss: {{vce_weight: 0.1, nce_weight: 1.0, vce_extent_m: 20.0}}
optim:
  epochs: {epochs}
  batch_size: 8
  lr: 2.0e-3
  num_correspondences: 64
  max_depth_m: 200.0
  val_top_k: 64
"""


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised ViT-S/14 saved as a Hugging Face directory (no weights here)."""
    import transformers

    from cvgl_ros.models.backbone import dinov2_config

    torch.manual_seed(0)
    model = transformers.Dinov2Model(dinov2_config("dinov2_vits14"))
    path = tmp_path_factory.mktemp("dinov2_random")
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, backbone_dir: Path, shared_data: Path
) -> dict[str, object]:
    """One tiny training run through ``cvgl-ros train``."""
    from cvgl_ros.tools.cli import main

    ortho = shared_data / "riotiler_fixture_orthos" / "pix4d_bali_ricefields_0p35m.tif"
    out = tmp_path_factory.mktemp("train_run")
    cfg = out / "train.yaml"
    cfg.write_text(
        CONFIG.format(out=out / "run", backbone=backbone_dir, head=HEAD, ortho=ortho, epochs=3)
    )
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 0
    with (out / "run" / "log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return {"out": out / "run", "config": cfg, "rows": rows}


@pytest.mark.slow
@pytest.mark.data
def test_training_lowers_the_loss(run: dict[str, object]) -> None:
    rows = run["rows"]
    assert isinstance(rows, list) and [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    losses = [float(r["train_loss"]) for r in rows[1:]]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert rows[0]["val_median_position_m"] != ""  # the untrained head is measured too


@pytest.mark.slow
@pytest.mark.data
def test_resume_continues_from_the_last_epoch(run: dict[str, object]) -> None:
    from cvgl_ros.tools.cli import main

    out = run["out"]
    assert isinstance(out, Path)
    assert main(["train", "--config", str(run["config"]), "--epochs", "4", "--no-progress"]) == 0
    with (out / "log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    assert int(rows[-1]["step"]) == int(rows[-2]["step"]) + 2  # 16 samples / batch 8


@pytest.mark.slow
@pytest.mark.data
def test_checkpoint_round_trips_into_the_node_matcher(
    run: dict[str, object], backbone_dir: Path, shared_data: Path
) -> None:
    from cvgl_ros.core.config import LocalizerConfig
    from cvgl_ros.core.depth import ConstantRangeDepth
    from cvgl_ros.core.localizer import Localizer
    from cvgl_ros.core.types import GnssPrior, PoseStatus
    from cvgl_ros.models.config import LearnedMatcherConfig
    from cvgl_ros.models.learned import LearnedMatcher
    from cvgl_ros.models.matching import select_matches, token_centers_px
    from cvgl_ros.training.cache import FeatureExtractor
    from cvgl_ros.training.config import load_train_config
    from cvgl_ros.training.trainer import build_dataset

    out = run["out"]
    assert isinstance(out, Path)
    best = out / "best"
    assert (best / "matcher.safetensors").is_file() and (best / "matcher.json").is_file()
    matcher = LearnedMatcher.from_config(
        LearnedMatcherConfig(
            checkpoint_path=str(best), backbone_weights_path=str(backbone_dir), top_k=64
        )
    )
    cfg = load_train_config(run["config"])
    assert cfg.val_data is not None
    sample = build_dataset(cfg.val_data).load(0)
    corr = matcher.match(sample.ground_image, sample.aerial)
    assert len(corr) > 0

    # The node's matches are exactly what the trained head gives on the same tokens.
    model = TrainableMatcher(HeadConfig(**HEAD), DualSoftmaxConfig())
    model.load_checkpoint(best)
    ext = FeatureExtractor(
        "dinov2_vits14", str(backbone_dir), (84, 84), (126, 126), torch.device("cpu")
    )
    g = ext.tokens(sample.ground_image, (84, 84)).float()[None]
    a = ext.tokens(sample.aerial.image, (126, 126)).float()[None]
    with torch.no_grad():
        _, probs = model(g, a)
    rows, cols, p = select_matches(probs[0].numpy(), 64, mutual=True)
    assert len(rows) == len(corr)
    np.testing.assert_allclose(np.sort(p), np.sort(corr.weights), rtol=2e-2, atol=1e-5)
    g_px = token_centers_px((6, 6), (84, 84), sample.ground_image.shape[:2])[rows]
    a_px = token_centers_px((9, 9), (126, 126), sample.aerial.image.shape[:2])[cols]
    mine = {tuple(np.round(np.r_[u, v], 3)) for u, v in zip(g_px, a_px, strict=True)}
    node = {
        tuple(np.round(np.r_[u, v], 3))
        for u, v in zip(corr.ground_px, corr.aerial_px, strict=True)
    }
    assert len(mine & node) >= 0.9 * len(node)  # fp16 cached tokens may swap near-ties

    class OnePatch:
        def patch_at(self, lat_deg: float, lon_deg: float):
            return sample.aerial

    altitude_m = float(np.nanmedian(sample.depth_m))
    localizer = Localizer(LocalizerConfig(), matcher, ConstantRangeDepth(altitude_m), OnePatch())
    prior = GnssPrior(
        sample.aerial.center_lat_deg, sample.aerial.center_lon_deg, np.eye(2) * 100.0
    )
    est = localizer.localize(
        sample.ground_image, sample.camera, prior, sample.gravity_from_camera, 0.0
    )
    assert est.status is not PoseStatus.ERROR, est.reasons
    assert est.num_matches > 0


def test_gradients_reach_the_head() -> None:
    torch.manual_seed(0)
    model = TrainableMatcher(HeadConfig(**HEAD), DualSoftmaxConfig())
    b, hg, ha = 2, 4, 5
    yy, xx = torch.meshgrid(
        torch.arange(ha, dtype=torch.float32), torch.arange(ha, dtype=torch.float32), indexing="ij"
    )
    aerial_pts = torch.stack([xx.flatten(), -yy.flatten()], -1) * 2.0
    batch = {
        "ground_tokens": torch.randn(b, hg, hg, 384),
        "aerial_tokens": torch.randn(b, ha, ha, 384),
        "ground_points_m": torch.randn(b, hg * hg, 2) * 4.0,
        "ground_valid": torch.ones(b, hg * hg, dtype=torch.bool),
        "aerial_points_m": aerial_pts[None].repeat(b, 1, 1),
        "aerial_valid": torch.ones(b, ha * ha, dtype=torch.bool),
        "camera_en_m": torch.tensor([[4.0, -4.0], [2.0, -6.0]]),
        "yaw_enu_rad": torch.tensor([0.3, -0.2]),
        "scale": torch.ones(b),
        "aerial_cell_m": torch.full((b,), 2.0),
    }
    out = compute_losses(model, batch, LossConfig(), OptimConfig(num_correspondences=16))
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.all(torch.isfinite(p.grad)), name
    assert float(model.head.proj.weight.grad.abs().sum()) > 0.0
    assert float(model.matcher.log_temperature.grad.abs()) > 0.0
    # VCE alone (no infoNCE) also reaches the head, through the sampled weights.
    model.zero_grad()
    out = compute_losses(
        model, batch, LossConfig(nce_weight=0.0), OptimConfig(num_correspondences=16)
    )
    out["loss"].backward()
    assert float(model.head.proj.weight.grad.abs().sum()) > 0.0


def test_collate_rejects_mixed_grids() -> None:
    from cvgl_ros.training.cache import PreparedSample

    def sample(h: int) -> PreparedSample:
        return PreparedSample(
            "x",
            torch.zeros(h, h, 4, dtype=torch.float16),
            torch.zeros(3, 3, 4, dtype=torch.float16),
            torch.zeros(h * h, 2),
            torch.ones(h * h, dtype=torch.bool),
            torch.zeros(9, 2),
            torch.ones(9, dtype=torch.bool),
            torch.zeros(2),
            0.0,
            1.0,
            1.0,
        )

    assert collate([sample(2), sample(2)])["ground_tokens"].dtype == torch.float32
    with pytest.raises(ValueError, match="token grids"):
        collate([sample(2), sample(3)])
