"""The node's parameter table and its validation into the component configs (no ROS)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cvgl_ros.ros.errors import ParameterError
from cvgl_ros.ros.params import (
    PARAMETERS,
    check_value,
    configs_from_params,
    flatten,
    load_params_file,
    merged_values,
    parse_override,
    runtime_parameter_names,
)

MAP = {"tiles.source": "/data/ortho.tif"}


def test_table_covers_every_component_section() -> None:
    prefixes = {name.split(".")[0] for name in PARAMETERS if "." in name}
    assert prefixes == {
        "lifting",
        "ransac",
        "covariance",
        "gating",
        "patch_reuse",
        "view",
        "height",
        "matcher",
        "depth",
        "tiles",
        "patch",
        "cache",
        "prefetch",
    }
    for name in ("image_topic", "max_fix_age_s", "gnss_source", "gpsd_port", "map_frame"):
        assert name in PARAMETERS
    # Nested sub-configs become dotted names, with their docstring descriptions.
    assert PARAMETERS["matcher.classical.ratio"].kind == "float"
    assert "ratio" in PARAMETERS["matcher.classical.ratio"].description.lower()
    assert PARAMETERS["matcher.classical.feature"].choices == ("sift", "akaze", "orb")
    assert PARAMETERS["depth.model.input_size_px"].kind == "int_array"


def test_runtime_parameters_are_the_gates_and_fix_handling() -> None:
    runtime = runtime_parameter_names()
    assert "gating.min_inliers" in runtime and "ransac.inlier_threshold_m" in runtime
    assert "max_fix_age_s" in runtime and "publish_overlay" in runtime
    assert "matcher.kind" not in runtime and "tiles.source" not in runtime
    assert "image_topic" not in runtime


def test_defaults_validate_and_build_the_configs() -> None:
    configs = configs_from_params(MAP)
    assert configs.tiles is not None and configs.tiles.source == "/data/ortho.tif"
    assert configs.node.map_origin is None
    assert configs.localizer.gating.min_inliers == PARAMETERS["gating.min_inliers"].default
    assert configs.patch.zoom is None  # -1 sentinel -> None
    assert configs.localizer.lifting.min_height_m is None  # NaN sentinel -> None
    assert configs_from_params({}).tiles is None  # no map: the node refuses to start later


def test_values_reach_nested_configs() -> None:
    configs = configs_from_params(
        {
            **MAP,
            "gating.min_inliers": 7,
            "ransac.inlier_threshold_m": 2,  # an int for a float parameter is fine
            "matcher.classical.feature": "orb",
            "depth.kind": "constant_range",
            "depth.model.input_size_px": [280, 280],
            "lifting.min_height_m": -50.0,
            "patch.zoom": 17,
            "tiles.headers": ["X-Api-Key: abc"],
            "map_origin_lat_deg": 47.0,
            "map_origin_lon_deg": 8.0,
        }
    )
    assert configs.localizer.gating.min_inliers == 7
    assert configs.localizer.ransac.inlier_threshold_m == 2.0
    assert configs.matcher.classical.feature == "orb"
    assert configs.depth.model.input_size_px == (280, 280)
    assert configs.localizer.lifting.min_height_m == -50.0
    assert configs.patch.zoom == 17
    assert configs.tiles is not None and configs.tiles.headers == (("X-Api-Key", "abc"),)
    assert configs.node.map_origin == (47.0, 8.0)


@pytest.mark.parametrize(
    ("values", "blamed"),
    [
        ({"gating.min_inlier": 3}, "gating.min_inlier"),  # typo: undeclared
        ({"gating.min_inliers": 2.5}, "gating.min_inliers"),  # float for int
        ({"gating.min_inliers": True}, "gating.min_inliers"),  # bool is not an int
        ({"max_fix_age_s": "1"}, "max_fix_age_s"),  # string for float
        ({"publish_overlay": 1}, "publish_overlay"),  # int for bool
        ({"gating.min_inlier_ratio": 1.5}, "gating.min_inlier_ratio"),  # above range
        ({"matcher.kind": "neural"}, "matcher.kind"),  # not a choice
        ({"gating.scale_min": 5.0, "gating.scale_max": 2.0}, "gating.scale_min"),  # min >= max
        ({"depth.range_m": -1.0}, "depth.range_m"),
        ({"map_origin_lat_deg": 47.0}, "map_origin_lat_deg"),  # lon missing
        ({"tiles.source": "ftp://nope"}, "tiles.source"),
        ({"depth.model.input_size_px": [1.5, 2.0]}, "depth.model.input_size_px"),
        ({"matcher.kind": "learned"}, "matcher.learned.checkpoint_path"),
    ],
)
def test_errors_name_the_parameter(values: dict[str, object], blamed: str) -> None:
    with pytest.raises(ParameterError) as info:
        configs_from_params({**MAP, **values})
    assert info.value.name == blamed, str(info.value)
    assert f"'{blamed}'" in str(info.value)


def test_typo_gets_a_suggestion() -> None:
    with pytest.raises(ParameterError, match=r"did you mean 'gating\.min_inliers'"):
        configs_from_params({"gating.min_inlier": 3})


def test_check_value_accepts_sentinels_of_optional_fields() -> None:
    assert math.isnan(check_value(PARAMETERS["lifting.max_height_m"], math.nan))
    assert check_value(PARAMETERS["patch.zoom"], -1) == -1
    assert check_value(PARAMETERS["matcher.learned.ground_size_px"], None) is None
    assert check_value(PARAMETERS["depth.model.input_size_px"], (266, 266)) == [266, 266]


def test_flatten_and_overrides() -> None:
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": 3}}}) == {"a": 1, "b.c": 2, "b.d.e": 3}
    assert parse_override("gating.min_inliers:=9") == ("gating.min_inliers", 9)
    assert parse_override("tiles.source:=/x.tif") == ("tiles.source", "/x.tif")
    assert math.isnan(parse_override("map_origin_lat_deg:=.nan")[1])
    with pytest.raises(ParameterError):
        parse_override("gating.min_inliers=9")


def test_params_file_with_namespace_wildcards(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    max_fix_age_s: 3.0\n"
        "/**/cvgl_node:\n  ros__parameters:\n    gating:\n      min_inliers: 20\n"
    )
    values = load_params_file(path)
    assert values == {"max_fix_age_s": 3.0, "gating.min_inliers": 20}
    merged = merged_values(path, ["gating.min_inliers:=25", "tiles.source:=/m.tif"])
    assert merged["gating.min_inliers"] == 25
    assert configs_from_params(merged).node.max_fix_age_s == 3.0
    other = tmp_path / "other.yaml"
    other.write_text("some_other_node:\n  ros__parameters:\n    x: 1\n")
    with pytest.raises(ParameterError, match="cvgl_node"):
        load_params_file(other)


def test_ransac_implementation_choices_and_missing_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    from cvgl_ros.core import ransac

    assert PARAMETERS["ransac.implementation"].choices == ("auto", "numba", "numpy")
    with pytest.raises(ParameterError, match=r"ransac\.implementation"):
        configs_from_params({"ransac.implementation": "cuda"})
    assert configs_from_params({"ransac.implementation": "numpy"}).localizer.ransac.implementation
    # Without numba "auto" still builds (numpy fallback); an explicit "numba" is refused at
    # start-up or when set at run time, with what to install.
    monkeypatch.setattr(ransac, "_kernel_module", None)
    monkeypatch.setattr(ransac, "_kernel_error", "numba is not installed (test)")
    configs_from_params({"ransac.implementation": "auto"})
    with pytest.raises(ParameterError, match="pip install numba"):
        configs_from_params({"ransac.implementation": "numba"})
