"""``cvgl-ros demo``: the main job, end to end, offline, in a couple of minutes.

1. A map: by default a procedurally generated, clearly labelled SYNTHETIC orthophoto written as
   ``DIR/synthetic_map.tif`` (no real imagery ships with the project); with ``--map`` a real
   GeoTIFF (or an MBTiles file / XYZ URL template with ``--center``).
2. A short synthetic drone flight over it (nadir camera, loop, roll/pitch jitter, photometric
   changes, a GNSS prior with bias and noise): ``DIR/flight/`` (mcap bag), ``truth.csv``.
3. Replay through the real node (rclpy, loopback DDS): ``DIR/replay/poses.csv`` etc.
4. Evaluation against the truth and the GNSS prior: ``DIR/report/report.md`` + plots, and one
   Loc2-style overlay.
5. A summary table on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.core.types import AerialPatch
from cvgl_ros.sim.gnss import GnssNoiseConfig
from cvgl_ros.sim.photometric import PhotometricConfig
from cvgl_ros.sim.synthetic_map import SyntheticMapConfig, synthetic_world, write_geotiff
from cvgl_ros.sim.trajectories import TrajectoryConfig
from cvgl_ros.tools.synth import CameraSpec, FlightConfig, load_world, synthesize

LOGGER = logging.getLogger(__name__)


def usable_extent_m(world: AerialPatch) -> float:
    """Side of the square of valid imagery the flight may use, metres (approximate)."""
    w, h = world.size_px
    return float(min(w, h) * world.m_per_px * math.sqrt(max(float(world.valid_mask.mean()), 1e-6)))


def plan_flight(
    world: AerialPatch,
    frames: int = 16,
    width_px: int = 640,
    height_px: int = 480,
    hfov_deg: float = 60.0,
    seed: int = 0,
    photometric: PhotometricConfig | None = None,
    storage: str = "mcap",
) -> FlightConfig:
    """A nadir loop that fits the map: the footprint is about a quarter of the map and the loop
    (half a circle over the flight) stays inside.

    Args:
        world: the world patch.
        frames: camera frames (1 Hz).
        width_px: image width, pixels.
        height_px: image height, pixels.
        hfov_deg: horizontal field of view, degrees.
        seed: random seed (jitter, photometric, GNSS).
        photometric: appearance changes (default: mild gamma/blur/noise/JPEG).
        storage: bag storage, ``mcap`` or ``sqlite3``.

    Returns:
        The flight configuration.
    """
    extent = usable_extent_m(world)
    footprint_per_altitude = 2.0 * math.tan(math.radians(hfov_deg / 2.0))
    altitude = float(np.clip(extent / (4.0 * footprint_per_altitude), 15.0, 3000.0))
    radius = float(np.clip(extent / 6.0, 5.0, 2000.0))
    rate_hz = 1.0
    speed = math.pi * radius / max(frames / rate_hz, 1.0)
    return FlightConfig(
        camera=CameraSpec(
            kind="nadir",
            width_px=width_px,
            height_px=height_px,
            hfov_deg=hfov_deg,
            altitude_m=altitude,
            jitter_deg=1.5,
        ),
        trajectory=TrajectoryConfig(
            kind="loop", num_frames=frames, rate_hz=rate_hz, speed_m_per_s=speed, radius_m=radius
        ),
        gnss=GnssNoiseConfig(seed=seed + 100),
        photometric=photometric or PhotometricConfig(),
        storage=storage,
        seed=seed,
    )


@dataclass(frozen=True)
class DemoResult:
    """Paths and headline numbers of a demo run."""

    out_dir: Path
    report: Path
    median_error_m: float
    prior_median_error_m: float
    availability: float
    mode: str
    metrics: dict[str, Any]


def _world_for(
    map_spec: str | None, out: Path, center: tuple[float, float] | None
) -> tuple[AerialPatch, str, str]:
    """(world, tile source for the node, label)."""
    if map_spec is None:
        world = synthetic_world(SyntheticMapConfig())
        path = write_geotiff(out / "synthetic_map.tif", world)
        return world, str(path.resolve()), "SYNTHETIC procedural orthophoto (not real imagery)"
    if Path(map_spec).suffix.lower() in (".tif", ".tiff") and Path(map_spec).is_file():
        return load_world(map_spec), str(Path(map_spec).resolve()), map_spec
    if center is None:
        raise SystemExit("--map with an MBTiles file or URL needs --center LAT LON")
    from cvgl_ros.tiles import PatchConfig, build_patch_source

    source = build_patch_source(
        map_spec,
        str(out / "tiles.mbtiles"),
        PatchConfig(patch_size_px=2048, patch_m_per_px=0.5),
        offline=False,
    )
    world = source.patch_at(center[0], center[1])
    return world, map_spec, map_spec


def run_demo(
    out_dir: str | Path,
    map_spec: str | None = None,
    center: tuple[float, float] | None = None,
    frames: int = 16,
    through_node: bool = True,
    seed: int = 0,
) -> DemoResult:
    """Run the whole demo; see the module docstring.

    Returns:
        Headline numbers and paths.
    """
    from cvgl_ros.tools.eval import run_eval
    from cvgl_ros.tools.replay import replay
    from cvgl_ros.tools.viz import run_viz

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("flight", "replay", "report", "overlay"):
        if (out / stale).exists():
            import shutil

            shutil.rmtree(out / stale)
    world, tile_source, label = _world_for(map_spec, out, center)
    cfg = plan_flight(world, frames=frames, seed=seed)
    synth = synthesize(world, cfg, out, map_label=label, map_source=tile_source)
    params = out / "params.yaml"
    mode = "node" if through_node else "pipeline"
    if through_node:
        try:
            import rclpy  # noqa: F401
        except ImportError as exc:
            print(f"demo: rclpy not importable ({exc}); replaying through the pipeline instead")
            through_node, mode = False, "pipeline"
    replay(synth.bag_path, params, out / "replay", through_node=through_node)
    result = run_eval(
        out / "replay" / "poses.csv",
        synth.truth_csv,
        report_dir=out / "report",
        map_path=tile_source if tile_source.endswith((".tif", ".tiff")) else None,
    )
    # One overlay of the middle frame (pipeline mode keeps the debug data).
    run_viz(
        str(synth.bag_path),
        str(params),
        out / "overlay",
        truth_csv=str(synth.truth_csv),
        every=max(frames // 2, 1),
        max_frames=frames // 2 + 1,
    )
    est, pri = result.estimate, result.prior
    summary = {
        "map": label,
        "frames": est.frames,
        "mode": mode,
        "flight": {
            "altitude_m": cfg.camera.altitude_m,
            "loop_radius_m": cfg.trajectory.radius_m,
            "image_px": [cfg.camera.width_px, cfg.camera.height_px],
        },
        **result.to_dict(),
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    return DemoResult(
        out_dir=out,
        report=out / "report" / "report.md",
        median_error_m=est.error_median_m,
        prior_median_error_m=pri.error_median_m if pri else math.nan,
        availability=est.availability,
        mode=mode,
        metrics=summary,
    )


def _main(args: argparse.Namespace) -> int:
    from cvgl_ros.tools.eval import metrics_table, run_eval

    t0 = time.perf_counter()
    center = (args.center[0], args.center[1]) if args.center else None
    res = run_demo(args.out, args.map, center, args.frames, not args.no_node, args.seed)
    result = run_eval(res.out_dir / "replay" / "poses.csv", res.out_dir / "truth.csv")
    flight = res.metrics["flight"]
    how = "the ROS 2 node (rclpy, loopback DDS)" if res.mode == "node" else "the pipeline"
    print()
    print(f"cvgl_ros demo: map {res.metrics['map']}")
    print(
        f"  {res.metrics['frames']} frames, nadir camera at {flight['altitude_m']:.0f} m, "
        f"replayed through {how}"
    )
    print()
    print(metrics_table(result))
    print()
    print(
        f"median position error {res.median_error_m:.2f} m vs GNSS prior "
        f"{res.prior_median_error_m:.2f} m; availability {100 * res.availability:.0f} %"
    )
    print(f"report: {res.report}")
    print(f"overlay: {res.out_dir / 'overlay'}")
    print(f"demo took {time.perf_counter() - t0:.1f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo", help="synthetic flight -> node replay -> evaluation report (offline)"
    )
    p.add_argument("--out", default="demo-out", help="output directory")
    p.add_argument("--map", default=None, help="GeoTIFF path (or MBTiles/URL with --center)")
    p.add_argument("--center", type=float, nargs=2, metavar=("LAT", "LON"), default=None)
    p.add_argument("--frames", type=int, default=16, help="camera frames (1 Hz)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-node", action="store_true", help="replay through the pipeline only")
    p.set_defaults(func=_main)
