"""``cvgl-ros selfcheck``: report which optional parts of the installation work."""

from __future__ import annotations

import argparse
import importlib
import platform

# (import name, what it enables, the extra that installs it)
_OPTIONAL: tuple[tuple[str, str, str], ...] = (
    ("numpy", "pose core", "(base)"),
    ("numba", "compiled RANSAC kernel (numpy fallback without it)", "(base)"),
    ("cv2", "classical matcher, image codecs", "(base)"),
    ("pyproj", "tile georeference", "(base)"),
    ("rasterio", "GeoTIFF orthophotos", "(base)"),
    ("requests", "XYZ/WMS tile download", "(base)"),
    ("rclpy", "ROS 2 node", "ros"),
    ("torch", "learned matcher and depth (torch backend)", "torch"),
    ("transformers", "DINOv2 and Depth Anything architectures", "torch"),
    ("onnxruntime", "ONNX Runtime backend", "onnx"),
    ("tensorrt", "TensorRT backend", "tensorrt"),
    ("pycuda", "TensorRT device buffers", "tensorrt"),
    ("gpsd", "gpsd fix source", "gpsd"),
    ("rosbags", "bag replay and synthesis", "tools"),
)


def run_selfcheck() -> list[tuple[str, bool, str]]:
    """Try each optional import; returns (name, importable, detail) rows."""
    rows = []
    for module, what, extra in _OPTIONAL:
        try:
            mod = importlib.import_module(module)
            version = getattr(mod, "__version__", "")
            rows.append((module, True, f"{what} {version}".strip()))
        except Exception as exc:  # any import failure means "not usable here"
            rows.append(
                (module, False, f"{what}: missing ({type(exc).__name__}); install extra [{extra}]")
            )
    from cvgl_ros.core.ransac import compiled_kernel_error, load_compiled_kernel

    if load_compiled_kernel() is not None:
        rows.append(("ransac", True, "RANSAC runs on the compiled numba kernel"))
    else:
        rows.append(("ransac", False, f"RANSAC runs on numpy: {compiled_kernel_error()}"))
    return rows


def _main(args: argparse.Namespace) -> int:
    print(f"cvgl_ros self-check on Python {platform.python_version()} ({platform.machine()})")
    rows = run_selfcheck()
    for module, ok, detail in rows:
        print(f"  {'ok  ' if ok else 'MISS'} {module:13s} {detail}")
    required = {"numpy", "cv2"}
    return 0 if all(ok for module, ok, _ in rows if module in required) else 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``selfcheck`` subcommand."""
    p = sub.add_parser("selfcheck", help="report which optional components are installed")
    p.set_defaults(func=_main)
