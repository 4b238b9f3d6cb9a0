"""The ``cvgl-ros`` command: one entry point, one module per subcommand.

Each module listed in :data:`COMMANDS` lives in :mod:`cvgl_ros.tools` and exposes
``register(subparsers: argparse._SubParsersAction) -> None``, which adds its parser and sets
``func`` (``argparse.Namespace -> int`` exit code) as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

# Subcommand modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "demo",
    "run",
    "params",
    "replay",
    "eval",
    "viz",
    "synth",
    "import_frames",
    "prefetch",
    "export",
    "build_engine",
    "weights",
    "bench",
    "train",
    "selfcheck",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every installed subcommand."""
    parser = argparse.ArgumentParser(
        prog="cvgl-ros",
        description="Cross-view geo-localization for ROS 2: camera + aerial imagery -> pose.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module_name = f"cvgl_ros.tools.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns its exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    # ``cvgl-ros run`` forwards everything after ``--ros-args`` to rclpy untouched.
    ros_args: list[str] = []
    if "--ros-args" in args_in:
        cut = args_in.index("--ros-args")
        args_in, ros_args = args_in[:cut], args_in[cut:]
    parser = build_parser()
    args = parser.parse_args(args_in)
    args.ros_args = ros_args
    level = logging.WARNING - 10 * min(int(args.verbose), 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"cvgl-ros {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            raise  # -v: the whole traceback, for bug reports
        print(f"cvgl-ros {args.command}: error: {describe_error(exc)}", file=sys.stderr)
        return 1


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong: the message of an error meant for users (a missing
    or corrupt bag, a bad parameter file, an unreadable map or tile cache), the exception
    type and message of anything else."""
    from cvgl_ros.ros.errors import RosAdapterError
    from cvgl_ros.tiles.errors import TilesError
    from cvgl_ros.tools.errors import ReplayError

    user_errors: tuple[type[BaseException], ...] = (
        RosAdapterError,
        TilesError,
        OSError,
        ReplayError,
    )
    text = str(exc) if isinstance(exc, user_errors) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split()) or type(exc).__name__
    if not isinstance(exc, user_errors):
        text += " (run with -v for the traceback)"
    return text


if __name__ == "__main__":
    sys.exit(main())
