"""Interfaces injected into the :class:`~cvgl_ros.core.localizer.Localizer`.

The core never imports an implementation: tiles/, models/ and backends/ implement these
protocols, and tests use their own doubles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cvgl_ros.core.types import AerialPatch, Correspondences, FloatArray, UInt8Array

if TYPE_CHECKING:
    from cvgl_ros.core.camera import CameraModel


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
class DepthProvider(Protocol):
    """Gives a depth for ground-image pixels (z-depth for pinhole, range for panoramas)."""

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
    """Builds a north-up metric aerial patch centred on a WGS84 point."""

    def patch_at(self, lat_deg: float, lon_deg: float) -> AerialPatch:
        """Return the patch centred on (lat_deg, lon_deg).

        Raises:
            cvgl_ros.core.errors.NoImageryError: when no imagery covers the point.
        """
        ...
