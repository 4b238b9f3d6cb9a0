"""Interfaces injected into the :class:`~cvgl_ros.core.localizer.Localizer`.

The core never imports an implementation: tiles/, models/ and backends/ implement these
protocols, and tests use their own doubles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cvgl_ros.core.types import AerialPatch, Correspondences, FloatArray, UInt8Array

if TYPE_CHECKING:
    from cvgl_ros.core.camera import CameraModel
    from cvgl_ros.core.view import MatchView


@runtime_checkable
class Matcher(Protocol):
    """Finds correspondences between a ground image and an aerial patch."""

    def match(self, ground_image: UInt8Array, patch: AerialPatch) -> Correspondences:
        """Match a ground image against an aerial patch.

        Args:
            ground_image: (H, W, 3) uint8 RGB (or (H, W) uint8 mono) camera image.
            patch: north-up aerial patch.

        Returns:
            Correspondences in ground and aerial pixel coordinates with weights in [0, 1].
        """
        ...


@runtime_checkable
class ViewMatcher(Protocol):
    """A :class:`Matcher` that can match a resampled, rotated view of the ground image.

    The localizer calls :meth:`match_view` instead of ``match`` when ground-resolution-adaptive
    matching is on (:class:`~cvgl_ros.core.config.ViewConfig`).
    """

    def match_view(
        self, ground_image: UInt8Array, patch: AerialPatch, view: MatchView
    ) -> Correspondences:
        """Match the view of ``ground_image`` described by ``view`` against ``patch``.

        Args:
            ground_image: (H, W, 3) uint8 RGB (or (H, W) uint8 mono) camera image.
            patch: north-up aerial patch (at ``view.m_per_px``).
            view: scale and rotation to apply to the ground image before matching
                (:func:`cvgl_ros.core.view.view_from_image`), and whether it is upright.

        Returns:
            Correspondences with ground pixels in the ORIGINAL ground image's coordinates.
        """
        ...


@runtime_checkable
class DepthProvider(Protocol):
    """Gives a depth for ground-image pixels (z-depth for pinhole, range for panoramas).

    Optional attributes the localizer reads when present: ``metric_scale_sigma`` (float or
    None): the relative 1-sigma error of the depth's metric scale, None when the depth is not
    metric (the similarity scale is then free); ``relative`` (bool): True when the depth has
    an arbitrary scale, so it cannot give the camera's height for adaptive matching.
    """

    def depth_at(
        self,
        ground_image: UInt8Array,
        camera: CameraModel,
        pixels_px: FloatArray,
        gravity_from_camera: FloatArray,
    ) -> FloatArray:
        """Depth of each pixel.

        Args:
            ground_image: (H, W, 3) uint8 RGB camera image.
            camera: the camera model of the image.
            pixels_px: (N, 2) float64, pixels (u, v) in the ground image.
            gravity_from_camera: (3, 3) float64 rotation, camera optical frame -> gravity-aligned
                body frame (x forward, y left, z up).

        Returns:
            (N,) float64, metres (or relative units; the Procrustes scale absorbs them); NaN
            where unknown (sky, above the horizon).
        """
        ...


@runtime_checkable
class PatchSource(Protocol):
    """Builds a north-up metric aerial patch centred on a WGS84 point.

    Sources that also implement :class:`ResolutionAwarePatchSource` get patches sized and
    resolved per frame when adaptive matching is on.
    """

    def patch_at(self, lat_deg: float, lon_deg: float) -> AerialPatch:
        """Return the patch centred on (lat_deg, lon_deg).

        Raises:
            cvgl_ros.core.errors.NoImageryError: when no imagery covers the point.
        """
        ...


@runtime_checkable
class ResolutionAwarePatchSource(Protocol):
    """A :class:`PatchSource` that knows its native resolution and takes size overrides."""

    def native_m_per_px_at(self, lat_deg: float, lon_deg: float) -> float:
        """The imagery's native ground resolution around a WGS84 point, metres per pixel.

        Raises:
            cvgl_ros.core.errors.NoImageryError: when no imagery covers the point.
        """
        ...

    def patch_at(
        self,
        lat_deg: float,
        lon_deg: float,
        patch_size_px: int | None = None,
        patch_m_per_px: float | None = None,
    ) -> AerialPatch:
        """The patch centred on (lat_deg, lon_deg), optionally with another size/resolution."""
        ...
