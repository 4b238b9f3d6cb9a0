"""scripts/gpu_check.sh skips cleanly without a GPU, and its Python part runs end to end on
the CPU (--cpu-smoke: plumbing only; the GPU items are verified only on a GPU machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
ITEMS = ("torch-cuda-fp16", "onnxruntime-cuda", "tensorrt-fp16")


def _run(tmp_path: Path, *args: str, path_dirs: tuple[Path, ...] = ()) -> tuple[int, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([*(str(p) for p in path_dirs), "/usr/bin", "/bin"])
    env["PYTHON"] = sys.executable
    env.pop("OUT", None)
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--out", str(tmp_path / "out"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("args", [(), ("--dry-run",)])
def test_without_a_gpu_every_item_skips_and_exits_0(tmp_path: Path, args: tuple[str, ...]) -> None:
    rc, out = _run(tmp_path, *args)  # PATH without nvidia-smi
    assert rc == 0, out
    for item in ITEMS:
        assert f"SKIP {item}: no GPU: nvidia-smi not found" in out
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [r["item"] for r in report["rows"]] == list(ITEMS)
    assert {r["status"] for r in report["rows"]} == {"skip"}
    assert "install" not in out, "nothing is installed without a GPU"


def test_dry_run_with_a_gpu_reports_the_plan_without_running(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    smi = fake_bin / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    rc, out = _run(tmp_path, "--dry-run", path_dirs=(fake_bin,))
    assert rc == 0, out
    assert "gpu_check: GPU 0: Fake GPU" in out and "would install: nothing" in out
    # This machine's torch has no CUDA: each item says why it would not run.
    assert "SKIP torch-cuda-fp16: torch sees no CUDA GPU" in out
    assert "SKIP onnxruntime-cuda:" in out and "SKIP tensorrt-fp16:" in out
    assert not (tmp_path / "out" / "gpu_check.json").exists(), "a dry run measures nothing"


def test_check_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from cvgl_ros.tools.gpu_check import main

    assert main(["--cpu-smoke", "--runs", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {r["item"]: r for r in report["rows"]}
    assert rows["tensorrt-fp16"]["status"] == "skip"
    for item in ("torch-cuda-fp16", "onnxruntime-cuda"):
        row = rows[item]
        assert row["status"] == "ok", row
        # Same weights, float32 on the CPU both ways: the comparison itself is sound.
        assert row["ground_min_cosine"] > 0.999 and row["aerial_min_cosine"] > 0.999
        assert row["depth_median_rel_diff"] < 1e-3
        assert row["depth_net_ms"] > 0
    assert rows["torch-cuda-fp16"]["correspondences"] > 0
