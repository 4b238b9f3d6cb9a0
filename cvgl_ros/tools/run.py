"""``cvgl-ros run``: start the localization node without ``ros2 run``.

``cvgl-ros run --params-file config/drone_nadir.yaml -p tiles.source:=/data/ortho.tif
[--ros-args -r __ns:=/drone ...]`` is the same as ``ros2 run cvgl_ros cvgl_node --ros-args
--params-file ... -p ...``; everything after ``--ros-args`` goes to rclpy untouched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def ros_arguments(params_file: str | None, overrides: list[str], ros_args: list[str]) -> list[str]:
    """The rclpy argument list for the node.

    Args:
        params_file: ROS 2 parameter YAML, or None.
        overrides: ``name:=value`` parameter overrides.
        ros_args: arguments after (and including) ``--ros-args``, passed on verbatim.

    Returns:
        ``["cvgl_node", "--ros-args", "--params-file", F, "-p", "a:=1", ...]``.
    """
    args = ["cvgl_node", "--ros-args"]
    if params_file:
        args += ["--params-file", str(Path(params_file).resolve())]
    for override in overrides:
        if ":=" not in override:
            raise ValueError(f"parameter overrides are written name:=value, got {override!r}")
        args += ["-p", override]
    extra = list(ros_args)
    if extra and extra[0] == "--ros-args":
        extra = extra[1:]
    return args + extra


def _main(args: argparse.Namespace) -> int:
    from cvgl_ros.ros.errors import ParameterError
    from cvgl_ros.ros.params import read_params_file

    if args.params_file and not Path(args.params_file).is_file():
        print(f"cvgl-ros run: parameter file not found: {args.params_file}", file=sys.stderr)
        return 2
    try:
        if args.params_file:
            # rcl's own parser would fail later with a C-level message and a traceback.
            read_params_file(args.params_file)
        argv = ros_arguments(args.params_file, list(args.param or []), list(args.ros_args))
    except (ParameterError, ValueError) as exc:
        print(f"cvgl-ros run: {exc}", file=sys.stderr)
        return 2
    from cvgl_ros.ros.node import main as node_main

    return node_main(argv)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``run`` subcommand."""
    p = sub.add_parser(
        "run",
        help="start the ROS 2 localization node (cvgl_node)",
        description=(
            "Start cvgl_node with a parameter file. Arguments after --ros-args go to rclpy "
            "(remaps, namespace, log level)."
        ),
    )
    p.add_argument("--params-file", help="ROS 2 parameter YAML (e.g. config/drone_nadir.yaml)")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        metavar="NAME:=VALUE",
        help="override one parameter (repeatable)",
    )
    p.set_defaults(func=_main)
