"""Dataset readers: VIGOR and KITTI layouts (built in tmp_path), synthetic renders."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from cvgl_ros.training.datasets import (
    KITTI_CAMERA_FROM_GPS_FLU_M,
    VIGOR_M_PER_PX_640,
    DatasetError,
    KittiDataset,
    SyntheticConfig,
    SyntheticDataset,
    VigorDataset,
    load_depth_file,
)
from cvgl_ros.training.geometry import cell_centers_px, lift_cells


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _vigor(tmp_path: Path) -> Path:
    root = tmp_path / "VIGOR"
    pano = np.zeros((32, 128, 3), np.uint8)
    pano[:, 61:67] = (255, 0, 0)  # the centre columns face north
    _write(root / "NewYork" / "panorama" / "p1,40.7,-74.0,.jpg", pano)
    _write(
        root / "NewYork" / "satellite" / "satellite_40.7_-74.0.png",
        np.full((64, 64, 3), 90, np.uint8),
    )
    labels = root / "splits__corrected" / "NewYork"
    labels.mkdir(parents=True)
    (labels / "satellite_list.txt").write_text("satellite_40.7_-74.0.png\n")
    line = (
        "p1,40.7,-74.0,.jpg satellite_40.7_-74.0.png 10.0 -20.0 s1.png 400.0 0.0 "
        "s2.png 5.0 5.0 s3.png 6.0 6.0\n"
    )
    (labels / "same_area_balanced_train.txt").write_text(line)
    return root


class TestVigor:
    def test_offsets_and_north_aligned_yaw(self, tmp_path: Path) -> None:
        ds = VigorDataset(_vigor(tmp_path), cities=("NewYork",), random_orientation=False)
        assert len(ds) == 1
        s = ds.load(0)
        gsd = VIGOR_M_PER_PX_640["NewYork"]
        # Panorama at row 320 + 10, column 320 - (-20) of the 640-px image.
        np.testing.assert_allclose(s.camera_en_m, [20.0 * gsd, -10.0 * gsd])
        assert s.aerial.m_per_px == pytest.approx(gsd * 10.0)  # 64-px image
        uv = s.aerial.en_to_pixel(s.camera_en_m[None])[0]
        np.testing.assert_allclose((uv + 0.5) * 10.0, [340.0, 330.0], atol=1e-9)
        assert s.yaw_enu_rad == pytest.approx(math.pi / 2)

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_random_orientation_keeps_north(self, tmp_path: Path, seed: int) -> None:
        s = VigorDataset(_vigor(tmp_path), cities=("NewYork",), seed=seed).load(0)
        red = np.flatnonzero((s.ground_image[16, :, 0] > 150) & (s.ground_image[16, :, 2] < 100))
        assert red.size >= 1
        u = float(red.mean())
        ray = s.camera.rays(np.array([[u, 15.5]]))[0]
        body = s.gravity_from_camera @ ray
        c, sn = math.cos(s.yaw_enu_rad), math.sin(s.yaw_enu_rad)
        east, north = c * body[0] - sn * body[1], sn * body[0] + c * body[1]
        assert math.degrees(math.atan2(east, north)) == pytest.approx(0.0, abs=360 / 128 + 0.5)

    def test_semi_positives_outside_the_footprint_are_dropped(self, tmp_path: Path) -> None:
        ds = VigorDataset(_vigor(tmp_path), cities=("NewYork",), semi_positives=True)
        ids = [ds.sample_id(i) for i in range(len(ds))]
        assert len(ids) == 3 and not any("s1.png" in i for i in ids)

    def test_missing_labels(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetError, match="label file missing"):
            VigorDataset(tmp_path, split="same_area_test")
        with pytest.raises(ValueError, match="split"):
            VigorDataset(tmp_path, split="everything")


def _kitti(tmp_path: Path) -> Path:
    root = tmp_path / "KITTI"
    date, drive = "2011_09_26", "2011_09_26_drive_0001_sync"
    raw = root / "raw_data" / date
    raw.mkdir(parents=True)
    (raw / "calib_cam_to_cam.txt").write_text(
        "S_rect_02: 1.242e+03 3.75e+02\n"
        "P_rect_02: 7.2e+02 0.0 6.0e+02 4.5e+01 0.0 7.1e+02 1.7e+02 -3.0e-01 0.0 0.0 1.0 0.0\n"
    )
    _write(
        raw / drive / "image_02" / "data" / "0000000000.png", np.zeros((375, 1242, 3), np.uint8)
    )
    oxts = raw / drive / "oxts" / "data"
    oxts.mkdir(parents=True)
    (oxts / "0000000000.txt").write_text("49.01 8.43 112.9 0.01 -0.02 0.5 " + "0 " * 24 + "\n")
    _write(root / "satmap" / date / drive / "0000000000.png", np.zeros((100, 100, 3), np.uint8))
    (root / "train_files.txt").write_text(f"{date}/{drive}/0000000000.png\n")
    return root


class TestKitti:
    def test_camera_pose_and_intrinsics(self, tmp_path: Path) -> None:
        s = KittiDataset(_kitti(tmp_path)).load(0)
        assert (s.camera.fx_px, s.camera.fy_px, s.camera.cx_px, s.camera.cy_px) == (
            720.0,
            710.0,
            600.0,
            170.0,
        )
        assert s.yaw_enu_rad == 0.5
        fwd, left = KITTI_CAMERA_FROM_GPS_FLU_M
        expect = [
            math.cos(0.5) * fwd - math.sin(0.5) * left,
            math.sin(0.5) * fwd + math.cos(0.5) * left,
        ]
        np.testing.assert_allclose(s.camera_en_m, expect)

    def test_crop_moves_the_camera_consistently(self, tmp_path: Path) -> None:
        root = _kitti(tmp_path)
        full = KittiDataset(root).load(0)
        crop = KittiDataset(root, aerial_crop_px=60, seed=4).load(0)
        assert crop.aerial.image.shape[:2] == (60, 60)
        uv_full = full.aerial.en_to_pixel(full.camera_en_m[None])[0]
        uv_crop = crop.aerial.en_to_pixel(crop.camera_en_m[None])[0]
        offset = uv_full - uv_crop
        np.testing.assert_allclose(offset, np.round(offset), atol=1e-9)  # integer crop corner
        assert 0 <= offset[0] <= 40 and 0 <= offset[1] <= 40

    def test_missing_list(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetError, match="file list missing"):
            KittiDataset(tmp_path, "nope.txt")


def test_depth_files(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.full((4, 5), 7.0, np.float32))
    assert load_depth_file(tmp_path / "a.jpg").shape == (4, 5)
    png = np.zeros((3, 3), np.uint16)
    png[1, 1] = 256 * 12
    cv2.imwrite(str(tmp_path / "b.png"), png)
    d = load_depth_file(tmp_path / "b.jpg")
    assert d[1, 1] == 12.0 and np.isnan(d[0, 0])
    with pytest.raises(DatasetError, match="no depth map"):
        load_depth_file(tmp_path / "c.jpg")


def _correlation(s, g, aerial_grey, vals_g, yaw: float, en: np.ndarray) -> float:
    """Correlation of ground samples with the aerial image under the pose (yaw, en)."""
    c, sn = math.cos(yaw), math.sin(yaw)
    uv = s.aerial.en_to_pixel(g @ np.array([[c, -sn], [sn, c]]).T + en).astype(np.float32)
    vals_a = cv2.remap(
        aerial_grey.astype(np.float32), uv[None, :, 0], uv[None, :, 1], cv2.INTER_LINEAR
    )[0]
    return float(np.corrcoef(vals_g, vals_a)[0, 1])


@pytest.mark.data
def test_synthetic_ground_truth_is_photometrically_consistent(shared_data: Path) -> None:
    ortho = shared_data / "riotiler_fixture_orthos" / "pix4d_bali_ricefields_0p35m.tif"
    cfg = SyntheticConfig(
        orthophotos=(str(ortho),),
        num_samples=3,
        seed=5,
        image_size_px=(96, 96),
        hfov_deg=60.0,
        altitude_range_m=(60, 80),
        max_offset_m=10.0,
        aerial_size_px=160,
        aerial_m_per_px=0.5,
        world_size_px=512,
    )
    ds = SyntheticDataset(cfg)
    assert ds.sample_id(1) == SyntheticDataset(cfg).sample_id(1)
    for i in range(len(ds)):
        s = ds.load(i)
        assert s.depth_m is not None
        pixels = cell_centers_px((96, 96), (48, 48))
        depth = s.depth_m[np.rint(pixels[:, 1]).astype(int), np.rint(pixels[:, 0]).astype(int)]
        lifted = lift_cells(s.camera, s.gravity_from_camera, pixels, depth, 500.0)
        g = lifted.points_m[lifted.valid].astype(np.float64)
        ground_grey = cv2.cvtColor(s.ground_image, cv2.COLOR_RGB2GRAY).astype(np.float64)
        aerial_grey = cv2.cvtColor(s.aerial.image, cv2.COLOR_RGB2GRAY).astype(np.float64)
        px = pixels[lifted.valid]
        vals_g = cv2.remap(
            ground_grey.astype(np.float32),
            px[:, 0].astype(np.float32)[None],
            px[:, 1].astype(np.float32)[None],
            cv2.INTER_LINEAR,
        )[0]

        # The ground truth is where ground and aerial agree best: any 3 m shift or 0.2 rad turn
        # of the pose lowers the agreement (the smooth rice-field texture keeps it modest).
        at_truth = _correlation(s, g, aerial_grey, vals_g, s.yaw_enu_rad, s.camera_en_m)
        assert at_truth > 0.4
        for d_en in ([3.0, 0.0], [-3.0, 0.0], [0.0, 3.0], [0.0, -3.0]):
            assert (
                at_truth
                > _correlation(
                    s, g, aerial_grey, vals_g, s.yaw_enu_rad, s.camera_en_m + np.array(d_en)
                )
                + 0.01
            )
        for d_yaw in (-0.2, 0.2):
            assert (
                at_truth
                > _correlation(s, g, aerial_grey, vals_g, s.yaw_enu_rad + d_yaw, s.camera_en_m)
                + 0.01
            )


@pytest.fixture(scope="module")
def extractor():
    """A one-layer random ViT-S/14 at tiny input sizes."""
    import torch

    from cvgl_ros.training.cache import FeatureExtractor

    torch.set_num_threads(2)
    return FeatureExtractor(
        "dinov2_vits14", "", (28, 56), (28, 28), torch.device("cpu"), num_layers=1
    )


class TestPreparation:
    """Readers through the backbone + lifting (a tiny random ViT stands in for DINOv2)."""

    def test_vigor_panorama_with_depth_files(self, tmp_path: Path, extractor) -> None:
        from cvgl_ros.training.cache import prepare_sample

        root = _vigor(tmp_path)
        depth_dir = tmp_path / "depth" / "NewYork" / "panorama"
        depth_dir.mkdir(parents=True)
        depth = np.full((32, 128), 10.0, np.float32)
        depth[:16] = np.nan  # "sky": the whole top token row
        np.save(depth_dir / "p1,40.7,-74.0,.npy", depth)
        ds = VigorDataset(root, cities=("NewYork",), depth_dir=tmp_path / "depth")
        prepared = prepare_sample(ds.load(0), extractor, max_depth_m=50.0)
        assert tuple(prepared.ground_tokens.shape) == (2, 4, 384)
        assert prepared.ground_tokens.dtype.is_floating_point
        # Top token row looks at the sky (no depth), bottom row at 10 m range.
        valid = prepared.ground_valid.numpy().reshape(2, 4)
        assert not valid[0].any() and valid[1].all()
        horizontal = np.linalg.norm(prepared.ground_points_m.numpy().reshape(2, 4, 2)[1], axis=1)
        assert np.all((horizontal > 5.0) & (horizontal <= 10.0 + 1e-4))
        assert prepared.scale == 1.0 and prepared.aerial_cell_m == pytest.approx(
            VIGOR_M_PER_PX_640["NewYork"] * 10.0 * 64 / 2
        )

    def test_kitti_with_a_geometric_depth_provider(self, tmp_path: Path, extractor) -> None:
        from cvgl_ros.models.config import DepthConfig
        from cvgl_ros.models.factory import build_depth
        from cvgl_ros.training.cache import prepare_sample

        sample = KittiDataset(_kitti(tmp_path)).load(0)
        provider = build_depth(DepthConfig(kind="ground_plane", camera_height_m=1.65))
        prepared = prepare_sample(sample, extractor, 80.0, provider, provider_is_metric=True)
        valid = prepared.ground_valid.numpy().reshape(2, 4)
        assert valid[1].any()  # the lower half of a forward camera sees the road
        assert np.all(prepared.ground_points_m.numpy()[prepared.ground_valid.numpy(), 0] > 0)

    def test_no_depth_is_a_dataset_error(self, tmp_path: Path, extractor) -> None:
        from cvgl_ros.training.cache import prepare_sample

        sample = KittiDataset(_kitti(tmp_path)).load(0)
        with pytest.raises(DatasetError, match="no depth"):
            prepare_sample(sample, extractor, 80.0)
