"""The node's parameter table and its validation into the component configs (no ROS)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from cvgl_ros.core import schema
from cvgl_ros.core.config import RANSAC_PRESETS, GatingConfig, RansacConfig
from cvgl_ros.models.config import ClassicalMatcherConfig
from cvgl_ros.ros.errors import ParameterError
from cvgl_ros.ros.params import (
    PARAMETERS,
    RUNTIME_PREFIXES,
    check_value,
    configs_from_params,
    declared_names,
    flatten,
    load_params_file,
    merged_values,
    parse_override,
    runtime_parameter_names,
)

MAP = {"tiles.source": "/data/ortho.tif"}


def test_only_marked_fields_are_parameters() -> None:
    prefixes = {name.rsplit(".", 1)[0] for name in PARAMETERS if "." in name}
    assert prefixes == {
        "lifting",
        "ransac",
        "covariance",
        "gating",
        "view",
        "height",
        "matcher",
        "matcher.classical",
        "matcher.learned",
        "depth",
        "depth.model",
        "tiles",
        "patch",
        "cache",
    }
    for name in ("max_fix_age_s", "gnss_source", "gpsd_port", "map_frame", "view.adaptive"):
        assert name in PARAMETERS
    # Internals are not parameters: RANSAC's seed and pool, CLAHE, HTTP timeouts, topics.
    for name in (
        "ransac.seed",
        "ransac.batch_size",
        "ransac.implementation",
        "matcher.classical.clahe",
        "matcher.classical.max_ground_features",
        "tiles.connect_timeout_s",
        "covariance.base_inflation",
        "patch_reuse.max_age_s",
        "image_topic",
        "fix_topic",
    ):
        assert name not in PARAMETERS, name
    assert PARAMETERS["matcher.classical.feature"].choices == ("sift", "akaze", "orb")
    assert PARAMETERS["depth.model.input_size_px"].kind == "int_array"
    assert PARAMETERS["ransac.preset"].choices == ("default", "fast", "thorough")


def test_parameter_count_is_the_deployment_surface() -> None:
    always = [n for n, s in PARAMETERS.items() if not s.only_for]
    assert 40 <= len(always) <= 50, len(always)
    # A classical + constant-range drone over a GeoTIFF declares a few more than that.
    drone = declared_names({"depth.kind": "constant_range", **MAP})
    assert len(drone) == len(always) + 3  # classical preset + feature, depth.range_m


def test_marker_ranges_are_the_config_validation() -> None:
    """The range a parameter advertises is the range its config enforces, nothing else."""
    spec = PARAMETERS["gating.min_inlier_ratio"]
    assert (spec.min_value, spec.max_value) == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"GatingConfig.min_inlier_ratio must be in \[0, 1\]"):
        GatingConfig(min_inlier_ratio=1.5)
    field = next(f for f in dataclasses.fields(RansacConfig) if f.name == "inlier_threshold_m")
    meta = schema.param_meta(field)
    spec = PARAMETERS["ransac.inlier_threshold_m"]
    assert meta is not None and meta.range == (spec.min_value, spec.max_value)
    assert spec.description == meta.description
    with pytest.raises(ValueError, match="inlier_threshold_m"):
        RansacConfig(inlier_threshold_m=meta.range[1] * 2)


def test_a_marker_needs_a_description() -> None:
    with pytest.raises(ValueError, match="description"):
        schema.param(1.0, description=" ")
    with pytest.raises(ValueError, match="low <= high"):
        schema.param(1.0, description="d", range=(2.0, 1.0))


def test_runtime_parameters_are_the_gates_and_fix_handling() -> None:
    runtime = runtime_parameter_names()
    assert "gating.min_inliers" in runtime and "ransac.inlier_threshold_m" in runtime
    assert "ransac.preset" in runtime
    assert "max_fix_age_s" in runtime and "publish_overlay" in runtime
    assert "matcher.kind" not in runtime and "tiles.source" not in runtime
    assert "matcher.classical.preset" not in runtime
    # The pipeline re-applies the localizer and the node settings only.
    assert all(n.rsplit(".", 1)[0] + "." in RUNTIME_PREFIXES or "." not in n for n in runtime)
    # A selector is read at start-up: what is declared never changes while running.
    selectors = {c.selector for s in PARAMETERS.values() for c in s.only_for}
    assert selectors and not selectors & runtime


def test_defaults_validate_and_build_the_configs() -> None:
    configs = configs_from_params(MAP)
    assert configs.tiles is not None and configs.tiles.source == "/data/ortho.tif"
    assert configs.node.map_origin is None
    assert configs.localizer.gating.min_inliers == PARAMETERS["gating.min_inliers"].default
    assert configs.localizer.ransac == RansacConfig()  # preset "default" = the field defaults
    assert configs_from_params({}).tiles is None  # no map: the node refuses to start later


def test_values_reach_nested_configs() -> None:
    configs = configs_from_params(
        {
            "tiles.source": "https://tiles.example/{z}/{x}/{y}.jpg",
            "gating.min_inliers": 7,
            "ransac.inlier_threshold_m": 2,  # an int for a float parameter is fine
            "matcher.classical.feature": "orb",
            "depth.kind": "model",
            "depth.model.input_size_px": [280, 280],
            "tiles.headers": ["X-Api-Key: abc"],
            "map_origin_lat_deg": 47.0,
            "map_origin_lon_deg": 8.0,
        }
    )
    assert configs.localizer.gating.min_inliers == 7
    assert configs.localizer.ransac.inlier_threshold_m == 2.0
    assert configs.matcher.classical.feature == "orb"
    assert configs.depth.model.input_size_px == (280, 280)
    assert configs.tiles is not None and configs.tiles.headers == (("X-Api-Key", "abc"),)
    assert configs.node.map_origin == (47.0, 8.0)


class TestKindAwareDeclaration:
    """Parameters of a matcher, depth or tile-source kind exist only for the selected one."""

    def test_declared_for_the_selected_kind_only(self) -> None:
        names = set(declared_names(MAP))
        assert "matcher.classical.feature" in names and "depth.camera_height_m" in names
        assert not {n for n in names if n.startswith(("matcher.learned.", "depth.model."))}
        assert "depth.range_m" not in names and "tiles.user_agent" not in names
        assert "cache.max_size_bytes" not in names and "gpsd_port" not in names
        learned = set(declared_names({"matcher.kind": "learned", "depth.kind": "model"}))
        assert "matcher.learned.checkpoint_path" in learned and "depth.model.backend" in learned
        assert "matcher.classical.feature" not in learned
        assert "depth.camera_height_m" not in learned

    @pytest.mark.parametrize(
        ("source", "present", "absent"),
        [
            (
                "/data/ortho.tif",
                set(),
                {"tiles.max_zoom", "tiles.wms_layers", "cache.max_size_bytes"},
            ),
            ("/data/tiles.mbtiles", set(), {"tiles.user_agent", "cache.max_size_bytes"}),
            (
                "https://{s}.tiles.example/{z}/{x}/{y}.jpg",
                {"tiles.subdomains", "tiles.max_zoom", "tiles.headers", "cache.max_size_bytes"},
                {"tiles.wms_layers"},
            ),
            (
                "wms:https://maps.example/wms",
                {"tiles.wms_layers", "tiles.wms_version", "tiles.user_agent"},
                {"tiles.subdomains"},
            ),
        ],
    )
    def test_tile_options_follow_the_source_kind(
        self, source: str, present: set[str], absent: set[str]
    ) -> None:
        names = set(declared_names({"tiles.source": source}))
        assert present <= names and not absent & names

    @pytest.mark.parametrize(
        ("values", "blamed", "says"),
        [
            (
                {"matcher.learned.checkpoint_path": "/m"},
                "matcher.learned.checkpoint_path",
                "only used with matcher.kind: learned (matcher.kind is 'classical')",
            ),
            (
                {"matcher.kind": "learned", "matcher.classical.feature": "orb"},
                "matcher.classical.feature",
                "only used with matcher.kind: classical",
            ),
            ({"depth.range_m": 50.0}, "depth.range_m", "depth.kind: constant_range"),
            ({"depth.model.fp16": True}, "depth.model.fp16", "depth.kind: model"),
            (
                {"tiles.wms_layers": "ortho"},
                "tiles.wms_layers",
                "a tiles.source of kind wms (tiles.source '/data/ortho.tif' is of kind geotiff)",
            ),
            ({"gpsd_host": "gps.local"}, "gpsd_host", "gnss_source: gpsd"),
            ({"camera_frame": "cam_optical"}, "camera_frame", "extrinsics_source: tf"),
        ],
    )
    def test_a_value_for_another_kind_is_an_error(
        self, values: dict[str, Any], blamed: str, says: str
    ) -> None:
        with pytest.raises(ParameterError) as info:
            configs_from_params({**MAP, **values})
        assert info.value.name == blamed and says in str(info.value), str(info.value)

    def test_a_bad_tile_source_is_blamed_before_its_options(self) -> None:
        with pytest.raises(ParameterError, match=r"'tiles\.source'"):
            configs_from_params({"tiles.source": "ftp://nope", "tiles.max_zoom": 18})


class TestPresets:
    def test_presets_set_internals_only_and_validate(self) -> None:
        for cls in (RansacConfig, ClassicalMatcherConfig):
            schema.check_presets(cls)
        assert set(RANSAC_PRESETS.names) == {"default", "fast", "thorough"}
        assert ClassicalMatcherConfig.PRESETS.names == ("default", "drone")

    def test_a_preset_naming_a_parameter_is_refused(self) -> None:
        @dataclasses.dataclass(frozen=True)
        class Cfg:
            PRESETS = schema.Presets({"default": {}, "bad": {"gain": 2.0}}, "d")
            gain: float = schema.param(1.0, description="g", range=(0.0, 9.0))

        with pytest.raises(ValueError, match="'gain', which is a parameter"):
            schema.check_presets(Cfg)

    def test_the_preset_reaches_the_config_and_parameters_win(self) -> None:
        fast = configs_from_params({"ransac.preset": "fast", "ransac.inlier_threshold_m": 1.5})
        assert fast.localizer.ransac == schema.from_preset(
            RansacConfig, "fast", inlier_threshold_m=1.5
        )
        assert fast.localizer.ransac.max_iterations == 256
        drone = configs_from_params({"matcher.classical.preset": "drone"})
        assert drone.matcher.classical.max_ground_features == 2000
        assert drone.matcher.classical.max_features == ClassicalMatcherConfig().max_features

    def test_an_unknown_preset_lists_the_valid_ones(self) -> None:
        with pytest.raises(ParameterError, match=r"\['default', 'fast', 'thorough'\]"):
            configs_from_params({"ransac.preset": "quick"})
        with pytest.raises(ValueError, match="valid presets: default, fast, thorough"):
            schema.from_preset(RansacConfig, "quick")


@pytest.mark.parametrize(
    ("values", "blamed"),
    [
        ({"gating.min_inlier": 3}, "gating.min_inlier"),  # typo: undeclared
        ({"gating.min_inliers": 2.5}, "gating.min_inliers"),  # float for int
        ({"gating.min_inliers": True}, "gating.min_inliers"),  # bool is not an int
        ({"max_fix_age_s": "1"}, "max_fix_age_s"),  # string for float
        ({"publish_overlay": 1}, "publish_overlay"),  # int for bool
        ({"gating.min_inlier_ratio": 1.5}, "gating.min_inlier_ratio"),  # above range
        ({"gating.scale_min": math.nan}, "gating.scale_min"),  # NaN is not "unset" here
        ({"matcher.kind": "neural"}, "matcher.kind"),  # not a choice
        ({"gating.scale_min": 5.0, "gating.scale_max": 2.0}, "gating.scale_min"),  # min >= max
        ({"depth.kind": "constant_range", "depth.range_m": -1.0}, "depth.range_m"),
        ({"map_origin_lat_deg": 47.0}, "map_origin_lat_deg"),  # lon missing
        ({"tiles.source": "ftp://nope"}, "tiles.source"),
        (
            {"depth.kind": "model", "depth.model.input_size_px": [1.5, 2.0]},
            "depth.model.input_size_px",
        ),
        (
            {"depth.kind": "model", "depth.model.input_size_px": [8, 266]},
            "depth.model.input_size_px",
        ),
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


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("covariance.aerial_px_sigma", "renamed 'covariance.aerial_sigma_px'"),
        (
            "view.coverage_sigma",
            "renamed 'view.coverage_n_sigma', an internal of ViewConfig, its default is in "
            "cvgl_ros.core.config",
        ),
        (
            "ransac.max_iterations",
            "an internal of RansacConfig, set by ransac.preset (default, fast, thorough)",
        ),
        ("ransac.seed", "an internal of RansacConfig, its default is in cvgl_ros.core.config"),
        ("matcher.classical.max_ground_features", "set by matcher.classical.preset"),
        ("image_topic", "input topics are fixed, remap camera/image_raw"),
        ("fix_topic", "remap gnss/fix"),
    ],
)
def test_former_parameters_say_what_became_of_them(name: str, says: str) -> None:
    with pytest.raises(ParameterError) as info:
        configs_from_params({name: 1})
    assert info.value.name == name and says in str(info.value), str(info.value)


def test_check_value_accepts_nan_where_it_means_unset() -> None:
    assert math.isnan(check_value(PARAMETERS["height.ground_elevation_m"], math.nan))
    assert math.isnan(check_value(PARAMETERS["map_origin_lat_deg"], math.nan))
    with pytest.raises(ParameterError):
        check_value(PARAMETERS["map_origin_lat_deg"], 91.0)
    assert check_value(PARAMETERS["depth.model.input_size_px"], (266, 266)) == [266, 266]
    assert check_value(PARAMETERS["gating.max_log10_nfa"], math.inf) == math.inf


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


def test_ransac_without_numba_still_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    from cvgl_ros.core import ransac

    monkeypatch.setattr(ransac, "_kernel_module", None)
    monkeypatch.setattr(ransac, "_kernel_error", "numba is not installed (test)")
    for preset in RANSAC_PRESETS.names:
        cfg = configs_from_params({"ransac.preset": preset}).localizer.ransac
        assert cfg.implementation == "auto"  # numba when installed, else numpy
