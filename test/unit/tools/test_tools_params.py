"""``cvgl-ros params``: what a parameter file declares, and the generated doc blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvgl_ros.tools.cli import main
from cvgl_ros.tools.params import BEGIN, END, render_blocks

ROOT = Path(__file__).resolve().parents[3]


def test_lists_what_a_file_declares_with_its_values(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ROOT / "config" / "drone_nadir.yaml")
    assert main(["params", "--config", config, "--set", "tiles.source:=/x.tif"]) == 0
    lines = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
    assert lines["matcher.classical.preset"] == ["drone"]
    assert lines["depth.range_m"] == ["100.0"]
    assert lines["ransac.preset"] == ["default", "[run", "time]"]
    assert lines["image_qos"] == ["auto", "(default)"]
    assert "matcher.learned.checkpoint_path" not in lines and "depth.camera_height_m" not in lines


def test_a_parameter_of_another_kind_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ROOT / "config" / "drone_nadir.yaml")
    assert main(["params", "--config", config, "--set", "matcher.learned.fp16:=true"]) == 2
    err = capsys.readouterr().err
    assert "'matcher.learned.fp16': is only used with matcher.kind: learned" in err


def test_write_replaces_a_stale_block(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    begin = BEGIN.format(kind="list")
    doc.write_text(f"# Title\n\n{begin}\nold table\n{END}\n\nafter\n")
    assert main(["params", "--write", str(doc)]) == 0
    text = doc.read_text()
    assert "old table" not in text and "| section | parameters |" in text
    assert text.startswith("# Title\n\n") and text.endswith(f"{END}\n\nafter\n")
    assert render_blocks(text) == text  # idempotent
    plain = tmp_path / "plain.md"
    plain.write_text("no block\n")
    assert main(["params", "--write", str(plain)]) == 2
