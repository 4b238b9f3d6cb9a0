"""Pictures: the evaluation report (``cvgl-ros eval --report``) and Loc2-style overlays
(``cvgl-ros viz``).

The overlay of one frame shows, side by side, the camera image with its matched keypoints
(RANSAC inliers green, outliers red) and the aerial patch with the matched aerial points, the
lifted ground layout mapped into the patch by the estimated similarity (scale, yaw,
translation), the ground-truth and estimated camera positions, the GNSS prior and the 3-sigma
covariance ellipse of the estimate.

Matplotlib runs with the Agg backend (files only, no display).
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cvgl_ros.core.geodesy import LocalEnu
from cvgl_ros.core.types import FloatArray

if TYPE_CHECKING:
    from cvgl_ros.tools.eval import EvalResult, PoseTable, TruthTable

LOGGER = logging.getLogger(__name__)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ellipse_points(cov_2x2: FloatArray, n_sigma: float = 3.0, n: int = 64) -> FloatArray:
    """Points of the ``n_sigma`` ellipse of a 2-D covariance, centred on 0: (n, 2)."""
    cov = np.asarray(cov_2x2, dtype=np.float64)
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    vals = np.maximum(vals, 0.0)
    t = np.linspace(0.0, 2.0 * math.pi, n)
    circle = np.stack([np.cos(t), np.sin(t)], axis=1)
    return np.asarray(n_sigma * (circle * np.sqrt(vals)[None, :]) @ vecs.T, dtype=np.float64)


# --------------------------------------------------------------------------- report


def _background(
    map_path: str, enu: LocalEnu, points_en: FloatArray
) -> tuple[Any, list[float]] | None:
    """An orthophoto patch under the given points, with its extent in ``enu`` metres."""
    try:
        from cvgl_ros.tiles.geotiff import GeoTiffPatchSource

        lo = np.nanmin(points_en, axis=0)
        hi = np.nanmax(points_en, axis=0)
        centre = 0.5 * (lo + hi)
        span = float(max(hi[0] - lo[0], hi[1] - lo[1])) + 60.0
        size = 768
        mpp = max(span / size, 0.05)
        lat, lon = enu.to_wgs84(centre[0], centre[1])
        with GeoTiffPatchSource(map_path, patch_size_px=size, patch_m_per_px=mpp) as src:
            patch = src.patch_at(float(lat), float(lon))
        half = 0.5 * size * mpp
        extent = [centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half]
        return patch.image, extent
    except Exception as exc:  # the plot still works without a background
        LOGGER.warning("no orthophoto under the trajectory plot: %s", exc)
        return None


def write_report(
    result: EvalResult,
    poses: PoseTable,
    truth: TruthTable,
    out_dir: Path,
    map_path: str | None = None,
) -> Path:
    """Write ``metrics.json``, four PNG plots and ``report.md`` into ``out_dir``.

    Returns:
        Path of ``report.md``.
    """
    import json

    from cvgl_ros.tools.eval import metrics_table

    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    enu = result.origin
    fe = result.estimate_frames
    pf = result.prior_frames
    te, tn = enu.to_en(truth.lat_deg, truth.lon_deg)
    truth_en = np.stack([te, tn], axis=1)
    est_en = np.full((len(poses.status), 2), np.nan)
    ok = fe.ok
    if np.any(ok):
        e, n = enu.to_en(poses.lat_deg[ok], poses.lon_deg[ok])
        est_en[ok] = np.stack([e, n], axis=1)
    prior_en = truth_en[:0]
    if pf is not None and result.prior is not None:
        prior_en = np.full((len(pf.ok), 2), np.nan)
        # prior position = truth + prior error at the same frame
        from cvgl_ros.tools.eval import truth_at

        t_en, _, _ = truth_at(truth, (pf.stamp_s * 1e9).round().astype(np.int64), enu)
        prior_en[pf.ok] = t_en[pf.ok] + pf.error_en_m[pf.ok]

    # 1. trajectory over the orthophoto
    fig, ax = plt.subplots(figsize=(7, 7))
    pts = np.concatenate([truth_en, est_en[ok], prior_en[np.all(np.isfinite(prior_en), axis=1)]])
    bg = _background(map_path, enu, pts) if map_path else None
    if bg is not None:
        ax.imshow(bg[0], extent=bg[1], origin="upper")
    ax.plot(truth_en[:, 0], truth_en[:, 1], "-", color="lime", lw=2, label="ground truth")
    if len(prior_en):
        ax.plot(prior_en[:, 0], prior_en[:, 1], "x", color="orange", ms=6, label="GNSS prior")
    ax.plot(est_en[ok, 0], est_en[ok, 1], "o", color="red", ms=4, mfc="none", label="cvgl_ros")
    ax.set_xlabel("east [m]")
    ax.set_ylabel("north [m]")
    ax.set_aspect("equal")
    ax.legend(loc="best")
    ax.set_title("trajectory" + (" over the orthophoto" if bg is not None else ""))
    fig.tight_layout()
    fig.savefig(out_dir / "trajectory.png", dpi=110)
    plt.close(fig)

    # 2. error over time
    t0 = fe.stamp_s[0] if len(fe.stamp_s) else 0.0
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(fe.stamp_s[ok] - t0, fe.error_m[ok], "o-", color="red", ms=3, label="cvgl_ros")
    if pf is not None:
        ax.plot(
            pf.stamp_s[pf.ok] - t0,
            pf.error_m[pf.ok],
            "x-",
            color="orange",
            ms=3,
            label="GNSS prior",
        )
    missing = ~ok
    if np.any(missing):
        ax.plot(
            fe.stamp_s[missing] - t0,
            np.zeros(int(missing.sum())),
            "|",
            color="gray",
            ms=12,
            label="no pose",
        )
    ax.set_xlabel("time [s]")
    ax.set_ylabel("position error [m]")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(out_dir / "error_over_time.png", dpi=110)
    plt.close(fig)

    # 3. error vs inlier ratio
    fig, ax = plt.subplots(figsize=(6, 4))
    ratio = poses.inlier_ratio
    has_ratio = ok & np.isfinite(ratio)
    if np.any(has_ratio):
        sc = ax.scatter(
            ratio[has_ratio],
            fe.error_m[has_ratio],
            c=poses.inliers[has_ratio],
            cmap="viridis",
            s=18,
        )
        fig.colorbar(sc, ax=ax, label="inliers")
    else:
        ax.text(
            0.5,
            0.5,
            "no inlier ratios (node mode or no pose)",
            ha="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("inlier ratio")
    ax.set_ylabel("position error [m]")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "error_vs_inlier_ratio.png", dpi=110)
    plt.close(fig)

    # 4. covariance ellipses in error space (truth at the origin)
    fig, ax = plt.subplots(figsize=(6, 6))
    for i in np.nonzero(ok)[0]:
        c = poses.cov_en_m2[i]
        if not np.all(np.isfinite(c)):
            continue
        err = fe.error_en_m[i]
        el = ellipse_points(c) + err[None, :]
        inside = fe.nees_position[i] <= 9.0
        ax.plot(el[:, 0], el[:, 1], "-", color="green" if inside else "red", lw=0.8, alpha=0.7)
        ax.plot(err[0], err[1], ".", color="black", ms=3)
    ax.plot([0], [0], "+", color="blue", ms=14, mew=2, label="truth")
    ax.set_xlabel("east error [m]")
    ax.set_ylabel("north error [m]")
    ax.set_aspect("equal")
    ax.set_title(
        "estimate errors with 3-sigma ellipses\n(green: truth inside, red: overconfident)"
    )
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "covariance_ellipses.png", dpi=110)
    plt.close(fig)

    (out_dir / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2))
    counts = ", ".join(f"`{k}`: {v}" for k, v in sorted(result.status_counts.items()))
    md = [
        "# cvgl_ros evaluation report",
        "",
        f"Frames: {result.estimate.frames}; statuses: {counts}.",
        "",
        metrics_table(result),
        "",
        "Recall counts every frame (a frame without a pose is a miss). NEES uses the published "
        "covariance; a consistent estimator has a mean NEES equal to its degrees of freedom "
        "and 95 % of frames inside the chi-square bound. False confidence: ok poses whose "
        "truth lies outside the 3-sigma ellipse.",
        "",
        "## Trajectory",
        "",
        "![trajectory](trajectory.png)",
        "",
        "## Error over time",
        "",
        "![error over time](error_over_time.png)",
        "",
        "## Error vs inlier ratio",
        "",
        "![error vs inlier ratio](error_vs_inlier_ratio.png)",
        "",
        "## Covariance ellipses",
        "",
        "![covariance ellipses](covariance_ellipses.png)",
        "",
    ]
    report = out_dir / "report.md"
    report.write_text("\n".join(md))
    return report


# --------------------------------------------------------------------------- overlay


def render_frame_overlay(
    image: Any,
    estimate: Any,
    out_path: Path,
    truth_latlon: tuple[float, float] | None = None,
    prior_latlon: tuple[float, float] | None = None,
    title: str = "",
) -> bool:
    """Draw one Loc2-style overlay figure from a PoseEstimate with debug data.

    Args:
        image: (H, W, 3) uint8 RGB camera image.
        estimate: the PoseEstimate (``debug`` must hold the patch and correspondences).
        out_path: PNG to write.
        truth_latlon: ground-truth camera position, degrees.
        prior_latlon: GNSS prior position, degrees.
        title: figure title.

    Returns:
        False when the estimate has no debug data to draw.
    """
    dbg = getattr(estimate, "debug", None)
    if dbg is None or dbg.patch is None:
        return False
    plt = _plt()
    patch = dbg.patch
    fig, (ax_g, ax_a) = plt.subplots(1, 2, figsize=(13, 6.2))
    ax_g.imshow(image)
    ax_a.imshow(patch.image)
    corr = dbg.correspondences
    inl_full = None
    if corr is not None and len(corr):
        inl_full = np.zeros(len(corr), dtype=bool)
        if dbg.lifted_index is not None and dbg.inlier_mask is not None:
            inl_full[np.asarray(dbg.lifted_index)[np.asarray(dbg.inlier_mask, dtype=bool)]] = True
        for mask, colour, label in ((~inl_full, "red", "outlier"), (inl_full, "lime", "inlier")):
            if np.any(mask):
                ax_g.plot(
                    corr.ground_px[mask, 0],
                    corr.ground_px[mask, 1],
                    ".",
                    color=colour,
                    ms=3,
                    label=label,
                )
                ax_a.plot(
                    corr.aerial_px[mask, 0], corr.aerial_px[mask, 1], ".", color=colour, ms=3
                )
    if dbg.points_g is not None and dbg.patch_from_camera is not None and len(dbg.points_g):
        sim = np.asarray(dbg.patch_from_camera, dtype=np.float64)
        g = np.asarray(dbg.points_g, dtype=np.float64)
        mapped = g @ sim[:2, :2].T + sim[:2, 2]
        px = patch.en_to_pixel(mapped)
        ax_a.plot(
            px[:, 0],
            px[:, 1],
            "o",
            mfc="none",
            color="cyan",
            ms=4,
            alpha=0.6,
            label="lifted ground (s R g + t)",
        )
    centre = LocalEnu(patch.center_lat_deg, patch.center_lon_deg)

    def to_px(lat: float, lon: float) -> FloatArray:
        e, n = centre.to_en(lat, lon)
        return np.asarray(patch.en_to_pixel(np.array([[float(e), float(n)]]))[0], np.float64)

    if truth_latlon is not None:
        p = to_px(*truth_latlon)
        ax_a.plot(p[0], p[1], "*", color="yellow", mec="black", ms=16, label="ground truth")
    if prior_latlon is not None:
        p = to_px(*prior_latlon)
        ax_a.plot(p[0], p[1], "X", color="orange", mec="black", ms=12, label="GNSS prior")
    if math.isfinite(getattr(estimate, "lat_deg", math.nan)):
        p = to_px(estimate.lat_deg, estimate.lon_deg)
        ax_a.plot(p[0], p[1], "P", color="red", mec="white", ms=12, label="estimate")
        yaw = float(estimate.yaw_enu_rad)
        arrow_px = 25.0
        ax_a.arrow(
            p[0], p[1], arrow_px * math.cos(yaw), -arrow_px * math.sin(yaw), color="red", width=1.5
        )
        cov = np.asarray(estimate.cov_en_yaw, dtype=np.float64)[:2, :2]
        if np.all(np.isfinite(cov)):
            el = ellipse_points(cov) / patch.m_per_px
            ax_a.plot(p[0] + el[:, 0], p[1] - el[:, 1], "-", color="red", lw=1.2, label="3-sigma")
    status = getattr(estimate, "status", None)
    ax_g.set_title("camera image: matched keypoints")
    ax_a.set_title(
        f"aerial patch ({patch.m_per_px:.2f} m/px): status {getattr(status, 'value', status)}, "
        f"{estimate.inliers} inliers, scale {estimate.scale:.3f}"
    )
    ax_a.legend(loc="lower right", fontsize=7)
    ax_g.legend(loc="lower right", fontsize=7)
    for ax in (ax_g, ax_a):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return True


def run_viz(
    bag: str,
    config: str | None,
    out_dir: str | Path,
    map_source: str | None = None,
    truth_csv: str | None = None,
    every: int = 1,
    max_frames: int | None = None,
    overrides: list[str] | None = None,
) -> list[Path]:
    """Replay a bag (pipeline mode, debug data kept) and draw an overlay per chosen frame.

    Returns:
        The PNG paths written.
    """
    from cvgl_ros.tools.eval import load_truth, truth_at
    from cvgl_ros.tools.outputs import FrameRecord
    from cvgl_ros.tools.replay import replay

    out = Path(out_dir)
    truth = load_truth(truth_csv) if truth_csv else None
    # The frame truth_at interpolates in: fixed, so built once, not per frame.
    enu = LocalEnu(float(truth.lat_deg[0]), float(truth.lon_deg[0])) if truth is not None else None
    written: list[Path] = []
    counter = [0]

    def on_frame(rec: FrameRecord, result: Any) -> None:
        i = counter[0]
        counter[0] += 1
        if i % max(every, 1) or result.image is None:
            return
        truth_ll = None
        if truth is not None and enu is not None:
            en, _, has = truth_at(truth, np.array([rec.stamp_ns]), enu)
            if has[0]:
                lat, lon = enu.to_wgs84(en[0, 0], en[0, 1])
                truth_ll = (float(lat), float(lon))
        prior_ll = (rec.prior.lat_deg, rec.prior.lon_deg) if rec.prior is not None else None
        path = out / f"overlay_{i:05d}.png"
        if render_frame_overlay(
            result.image,
            rec.estimate,
            path,
            truth_ll,
            prior_ll,
            title=f"frame {i}, stamp {rec.stamp_ns}",
        ):
            written.append(path)

    replay(
        bag,
        config,
        out,
        map_source=map_source,
        overrides=overrides,
        max_frames=max_frames,
        on_frame=on_frame,
        keep_debug=True,
    )
    return written


def _main(args: argparse.Namespace) -> int:
    paths = run_viz(
        args.bag,
        args.config,
        args.out,
        args.map,
        args.truth,
        args.every,
        args.max_frames,
        args.set,
    )
    print(f"viz: wrote {len(paths)} overlay(s) to {args.out}")
    for p in paths[:5]:
        print(f"  {p}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``viz`` subcommand."""
    p = sub.add_parser("viz", help="Loc2-style overlays of matches, lifted layout and pose")
    p.add_argument("bag", help="bag to replay")
    p.add_argument("--config", default=None, help="node parameter YAML")
    p.add_argument("--out", required=True, help="output directory for PNGs")
    p.add_argument("--map", default=None, help="tile source override")
    p.add_argument("--truth", default=None, help="truth CSV (draws the ground-truth marker)")
    p.add_argument("--every", type=int, default=1, help="draw every N-th frame")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N images")
    p.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE")
    p.set_defaults(func=_main)
