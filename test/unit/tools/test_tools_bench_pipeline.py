"""The ``pipeline`` benchmark suite's building blocks (no timing assertions)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("cv2")
pytest.importorskip("rosbags")

from cvgl_ros.tools.benchmarks import pipeline as bench

FILES = {
    "checkpoint": "/models/ck",
    "dino": "/models/dino",
    "depth_weights": "/models/depth_anything",
    "engine_dir": "/models/engines",
    "depth_onnx": "/models/engines/depth_anything_v2_small.onnx",
}


@pytest.mark.parametrize("variant", bench.LEARNED_VARIANTS)
def test_learned_overrides_are_valid_node_parameters(variant: str) -> None:
    from cvgl_ros.ros.params import configs_from_params

    configs = configs_from_params(bench.learned_overrides(variant, FILES))
    learned, model = configs.matcher.learned, configs.depth.model
    assert configs.matcher.kind == "learned" and configs.depth.kind == "model"
    assert learned.checkpoint_path == FILES["checkpoint"]
    assert tuple(model.input_size_px) == bench.LEARNED_DEPTH_SIZE_PX
    if variant == "torch":
        assert learned.backend == "torch" and model.backend == "torch"
        assert learned.backbone_weights_path == FILES["dino"]
        assert model.weights_path == FILES["depth_weights"] and model.engine_path == ""
    else:
        # What a CPU deployment runs: "auto" picks ONNX Runtime on the exported files.
        assert learned.backend == "auto" and model.backend == "auto"
        assert learned.engine_dir == FILES["engine_dir"]
        assert model.engine_path == FILES["depth_onnx"]
        assert learned.backbone_weights_path == "" and model.weights_path == ""
    assert learned.int8 is model.int8 is variant.endswith("-int8")


def test_learned_configs_switch_a_classical_flight_file(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        "cvgl_node:\n  ros__parameters:\n    tiles: {source: /x.tif}\n"
        "    matcher: {kind: classical}\n    depth: {kind: ground_plane, camera_height_m: 60.0}\n"
    )
    configs = bench.learned_configs(params, "onnxruntime", FILES)
    assert configs.matcher.kind == "learned" and configs.depth.kind == "model"
    assert configs.matcher.learned.top_k == bench.LEARNED_TOP_K  # an internal, not a parameter


def test_learned_overrides_reject_unknown_variant() -> None:
    with pytest.raises(ValueError, match="variant"):
        bench.learned_overrides("tensorrt", FILES)


def test_replay_summary_of_a_short_classical_flight(tmp_path: Path) -> None:
    from cvgl_ros.ros.pipeline import Pipeline

    bag, params = bench._flight(tmp_path, 3, 320, 240, "qvga")
    summary = bench.replay_summary(bag, Pipeline.from_params_file(params), max_frames=2)
    json.dumps(summary)  # crosses the process boundary as JSON
    assert summary["frames"] == 2 and sum(summary["statuses"].values()) == 2
    assert summary["frames_per_s"] > 0 and summary["median_frame_ms"] > 0
    assert summary["cache"]["hits"] + summary["cache"]["misses"] == 2
    assert summary["patches"]["built"] >= 1
    for stage in ("match", "total"):
        median, p90 = summary["stages_ms"][stage]
        assert 0 < median <= p90
    assert len(summary["load_avg"]) == 2
    rows = bench._replay_rows("t", bag, Pipeline.from_params_file(params), 100.0, "", 1)
    assert rows[0]["name"] == "replay t" and math.isfinite(rows[0]["ratio"])
    assert {r["name"] for r in rows[1:]} >= {"t stage match", "t stage total"}


def test_learned_child_failure_becomes_an_error(tmp_path: Path) -> None:
    missing = {k: str(tmp_path / "missing" / Path(v).name) for k, v in FILES.items()}
    res = bench._run_learned_child("onnxruntime", missing, tmp_path / "no.bag", tmp_path, 1)
    assert set(res) == {"error"} and res["error"]
