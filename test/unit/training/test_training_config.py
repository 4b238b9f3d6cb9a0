"""The training YAML: strict keys, validated values, the shipped examples load."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from cvgl_ros.training.config import ConfigError, TrainConfig, load_train_config

CONFIG_DIR = Path(__file__).resolve().parents[3] / "cvgl_ros" / "training" / "configs"

_MINIMAL = """
output_dir: {out}
train_data: {{kind: synthetic, synthetic: {{orthophotos: [a.tif], num_samples: 4}}}}
val_data: {{kind: synthetic, synthetic: {{orthophotos: [a.tif], num_samples: 2, seed: 1}}}}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "train.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
def test_shipped_examples_load(name: str) -> None:
    cfg = load_train_config(CONFIG_DIR / name)
    assert isinstance(cfg, TrainConfig)
    assert cfg.train_data is not None and cfg.val_data is not None


def test_minimal_config_and_defaults(tmp_path: Path) -> None:
    cfg = load_train_config(_write(tmp_path, _MINIMAL.format(out=tmp_path / "run")))
    assert cfg.optim.batch_size == 8 and cfg.model.ground_size_px == (224, 224)
    assert cfg.train_data is not None and cfg.train_data.synthetic is not None
    assert cfg.train_data.synthetic.orthophotos == ("a.tif",)
    assert cfg.cache_path == tmp_path / "run" / "cache"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    text = _MINIMAL.format(out=tmp_path) + "optim: {epochs: 2, learning_rate: 0.1}\n"
    with pytest.raises(ConfigError, match="learning_rate"):
        load_train_config(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("optim: {batch_size: 0}", "batch_size"),
        ("optim: {sampling: best}", "sampling"),
        ("model: {ground_size_px: [100, 100]}", "ground_size_px"),
        ("loss: {vce_weight: 0.0, nce_weight: 0.0}", "cannot both be 0"),
        ("device: tpu", "device"),
        ("optim: {epochs: two}", "epochs"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, extra: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_train_config(_write(tmp_path, _MINIMAL.format(out=tmp_path) + extra + "\n"))


def test_missing_section_and_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="vigor"):
        load_train_config(
            _write(
                tmp_path,
                _MINIMAL.format(out=tmp_path).replace(
                    "train_data: {kind: synthetic", "train_data: {kind: vigor"
                ),
            )
        )
    with pytest.raises(ConfigError, match="not found"):
        load_train_config(tmp_path / "nope.yaml")
