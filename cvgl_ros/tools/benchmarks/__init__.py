"""Benchmark suites run by ``cvgl-ros bench``.

Each module listed in :data:`SUITES` exposes ``run(quick: bool) -> list[dict[str, object]]``
returning result rows. A row has at least ``name`` (str), ``metric`` (str, unit in the name,
e.g. ``median_ms``), ``value`` (float), and may carry ``baseline`` (name of the baseline row in
the same run), ``ratio`` (value / baseline value), ``goal`` (str) and ``notes`` (str).
"""

SUITES: tuple[str, ...] = ("core", "tiles", "models", "ros", "pipeline", "realframes")
