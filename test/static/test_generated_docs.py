"""docs/NODE.md's parameter table and the README's parameter list are generated from the config
field markers (``cvgl-ros params --write docs/NODE.md README.md``); they must be current."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvgl_ros.tools.params import generated_kinds, render_blocks

ROOT = Path(__file__).resolve().parents[2]
DOCS = {"docs/NODE.md": ["markdown"], "README.md": ["list"]}


@pytest.mark.parametrize("relpath", sorted(DOCS))
def test_generated_blocks_are_current(relpath: str) -> None:
    text = (ROOT / relpath).read_text()
    assert generated_kinds(text) == DOCS[relpath]
    assert render_blocks(text) == text, (
        f"{relpath} is stale: run `cvgl-ros params --write docs/NODE.md README.md`"
    )


def test_a_stale_table_is_detected() -> None:
    text = (ROOT / "docs/NODE.md").read_text()
    stale = text.replace("`gating.min_inliers`", "`gating.min_inliers_old`", 1)
    assert stale != text and render_blocks(stale) == text


def test_the_readme_gives_the_parameter_count() -> None:
    from cvgl_ros.ros.params import PARAMETERS, parameter_count_text

    readme = (ROOT / "README.md").read_text()
    assert parameter_count_text() in readme
    assert parameter_count_text().startswith(f"{len(PARAMETERS)} parameters")
