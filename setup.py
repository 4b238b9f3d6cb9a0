"""ament_python / pip build of cvgl_ros.

The same file serves ``colcon build`` (data_files install the ament index marker, package.xml,
launch/ and config/ under share/cvgl_ros) and ``pip install`` into a virtual environment.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "cvgl_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={f"{PACKAGE}.training": ["configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        # Exported networks and engines present at build time: relative model paths (the
        # default engine_dir "engines") resolve against share/cvgl_ros when installed
        # (cvgl_ros/models/paths.py). Built on the robot, before colcon build.
        (
            f"share/{PACKAGE}/engines",
            sorted(
                glob("engines/*.onnx") + glob("engines/*.engine") + glob("engines/*.manifest.json")
            ),
        ),
    ],
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        "numpy>=1.22",
        # Compiles the RANSAC kernel (cvgl_ros/core/ransac_kernel.py); the core falls back to
        # numpy without it, 3-9x slower per solve (docs/BENCHMARKS.md).
        "numba>=0.59",
        "opencv-python-headless>=4.5",
        "pyyaml>=5.4",
        "requests>=2.28",
        "pyproj>=3.3",
        "mercantile>=1.2",
        "rasterio>=1.3",
        "scipy>=1.8",
    ],
    extras_require={
        # The ROS 2 wheels from PyPI, for machines without a ROS install (CI, laptops).
        "ros": [
            "ros-rclpy",
            "ros-rmw-fastrtps-cpp",
            "ros-std-msgs",
            "ros-sensor-msgs",
            "ros-geometry-msgs",
            "ros-nav-msgs",
            "ros-diagnostic-msgs",
        ],
        # torch >= 2.1: export passes dynamo=False only where torch.onnx.export has the
        # parameter (torch >= 2.5), so older torch still exports (cvgl_ros/tools/export.py).
        "torch": ["torch>=2.1", "transformers>=4.40", "safetensors>=0.4"],
        # The learned path without torch (ONNX Runtime / TensorRT) still reads the matcher
        # checkpoint (safetensors); safetensors has no rosdep key, so pip installs it.
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17", "safetensors>=0.4"],
        # The runner and engine build are written against the TensorRT 10 Python API
        # (execute_async_v3, named tensors, set_memory_pool_limit); a major release removes
        # APIs, so < 11 until it is ported. pycuda's driver API used here (Device,
        # retain_primary_context, mem_alloc, Stream, memcpy_*_async) has been stable since
        # 2013; an upper bound would only block new Jetson/CUDA wheels.
        "tensorrt": ["tensorrt>=10.0,<11", "pycuda>=2022.2", "safetensors>=0.4"],
        "gpsd": ["gpsd-py3>=0.3"],
        "tools": ["rosbags>=0.10", "matplotlib>=3.6", "tqdm>=4.60"],
        "dev": [
            "pytest>=7",
            "pytest-timeout",
            "hypothesis>=6",
            "ruff",
            "mypy",
            "types-requests",
            "types-PyYAML",
        ],
    },
    zip_safe=True,
    maintainer="cvgl_ros maintainers",
    maintainer_email="cvgl-ros@example.com",
    description="Cross-view geo-localization against aerial imagery for ROS 2",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "cvgl-ros = cvgl_ros.tools.cli:main",
            "cvgl_node = cvgl_ros.ros.node:main",
        ],
    },
)
