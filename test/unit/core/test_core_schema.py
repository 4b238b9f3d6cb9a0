"""Parameter markers (range = validation), named presets, and what the RANSAC presets do."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import pytest

from cvgl_ros.core.config import RANSAC_PRESETS, RansacConfig
from cvgl_ros.core.ransac import ransac_similarity
from cvgl_ros.core.schema import Presets, check_presets, check_ranges, from_preset, param
from cvgl_ros.core.synthetic import make_problem


@dataclasses.dataclass(frozen=True)
class _Cfg:
    PRESETS: ClassVar[Presets] = Presets(
        {"default": {}, "coarse": {"cells": 4}}, description="test presets"
    )

    count: int = param(3, description="a count", range=(1, 10))
    gain_m: float = param(1.0, description="a gain, metres", range=(0.0, 5.0))
    level_m: float = param(math.nan, description="NaN = unset", range=(-5.0, 5.0))
    size_px: tuple[int, int] = param((16, 16), description="a size", range=(14, 64))
    cells: int = 8  # an internal

    def __post_init__(self) -> None:
        check_ranges(self)


class TestCheckRanges:
    def test_in_range_values_pass(self) -> None:
        _Cfg(count=10, gain_m=0.0, level_m=-5.0, size_px=(14, 64))
        assert math.isnan(_Cfg().level_m)  # NaN is "unset" where the default is NaN

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"count": 11}, r"_Cfg.count must be in \[1, 10\], got 11"),
            ({"count": 2.0}, "_Cfg.count must be an integer"),
            ({"count": True}, "_Cfg.count must be an integer"),
            ({"gain_m": math.nan}, r"_Cfg.gain_m must be in \[0, 5\], got nan"),
            ({"gain_m": -math.inf}, "_Cfg.gain_m must be in"),
            ({"gain_m": "1"}, "_Cfg.gain_m must be a number"),
            ({"level_m": 6.0}, "_Cfg.level_m must be in"),
            ({"size_px": (16, 8)}, r"_Cfg.size_px must be in \[14, 64\], got 8"),
        ],
    )
    def test_out_of_range_values_name_the_field_and_range(
        self, kwargs: dict[str, object], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            _Cfg(**kwargs)  # type: ignore[arg-type]


class TestPresets:
    def test_default_changes_nothing(self) -> None:
        with pytest.raises(ValueError, match="'default'"):
            Presets({"fast": {"cells": 2}}, "d")
        with pytest.raises(ValueError, match="'default'"):
            Presets({"default": {"cells": 2}}, "d")
        assert _Cfg.PRESETS.names == ("default", "coarse")
        assert _Cfg.PRESETS.defaults(["cells"]) == {"cells": 8}

    def test_from_preset_merges_explicit_fields(self) -> None:
        assert from_preset(_Cfg, "coarse", count=5) == _Cfg(count=5, cells=4)
        assert from_preset(_Cfg) == _Cfg()
        with pytest.raises(
            ValueError, match="unknown preset 'fine'; valid presets: default, coarse"
        ):
            from_preset(_Cfg, "fine")
        with pytest.raises(TypeError, match="no presets"):
            from_preset(dataclasses.make_dataclass("Plain", [("x", int, 1)]), "default")

    def test_check_presets_refuses_unknown_fields_and_parameters(self) -> None:
        check_presets(_Cfg)

        @dataclasses.dataclass(frozen=True)
        class Unknown:
            PRESETS: ClassVar[Presets] = Presets({"default": {}, "x": {"nope": 1}}, "d")
            cells: int = 8

        with pytest.raises(ValueError, match="unknown field 'nope'"):
            check_presets(Unknown)

        @dataclasses.dataclass(frozen=True)
        class Invalid:
            PRESETS: ClassVar[Presets] = Presets({"default": {}, "x": {"count": 0}}, "d")
            count: int = param(3, description="c", range=(1, 10))

            def __post_init__(self) -> None:
                check_ranges(self)

        with pytest.raises(ValueError, match="'count', which is a parameter"):
            check_presets(Invalid)


def test_ransac_presets_trade_hypotheses_for_robustness() -> None:
    """At 5 % inliers (uninformative weights) ``fast`` stops at its 256-hypothesis cap and
    misses some problems; ``default`` needs its full 2000; ``thorough`` draws more and finds
    every one."""
    check_presets(RansacConfig)
    assert RANSAC_PRESETS.names == ("default", "fast", "thorough")
    found = dict.fromkeys(RANSAC_PRESETS.names, 0)
    drawn: dict[str, list[int]] = {name: [] for name in RANSAC_PRESETS.names}
    seeds = range(10)
    for seed in seeds:
        p = make_problem(np.random.default_rng(seed), 300, 0.95, 0.3, informative_weights=False)
        for name in RANSAC_PRESETS.names:
            cfg = from_preset(RansacConfig, name, seed=seed)
            result = ransac_similarity(p.source, p.target, p.weights, cfg)
            error_m = float(np.linalg.norm(result.model.translation_m - p.truth.translation_m))
            found[name] += error_m < 1.0
            drawn[name].append(result.iterations)
    assert max(drawn["fast"]) <= 256 and max(drawn["default"]) <= 2000
    assert min(drawn["thorough"]) > max(drawn["default"]) > max(drawn["fast"])
    assert found["thorough"] == len(seeds) and found["fast"] < found["thorough"]
