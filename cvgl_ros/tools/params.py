"""``cvgl-ros params``: the node's parameters, generated from the config field markers.

- ``cvgl-ros params [--config FILE] [--set NAME:=VALUE ...]``: the parameters the node would
  declare for that parameter file (the selected kinds only), with their values; exits 2 naming
  the parameter on an invalid file (an unknown name, a value for a kind that is not selected).
- ``cvgl-ros params --markdown``: docs/NODE.md's parameter table; ``--list``: the README's
  compact list.
- ``cvgl-ros params --write docs/NODE.md README.md``: rewrite the generated blocks in place
  (between ``<!-- BEGIN GENERATED: cvgl-ros params --markdown -->`` and
  ``<!-- END GENERATED -->``); ``test/static/test_generated_docs.py`` fails when a file holds
  another version than the code generates.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BEGIN = "<!-- BEGIN GENERATED: cvgl-ros params --{kind} -->"
END = "<!-- END GENERATED -->"
_BLOCK = re.compile(
    r"^(?P<begin><!-- BEGIN GENERATED: cvgl-ros params --(?P<kind>[a-z]+) -->)$"
    r"(?P<body>.*?)^(?P<end>" + re.escape(END) + ")$",
    re.DOTALL | re.MULTILINE,
)


def _generators() -> dict[str, Callable[[], str]]:
    from cvgl_ros.ros.params import parameter_list_markdown, parameter_table_markdown

    return {"markdown": parameter_table_markdown, "list": parameter_list_markdown}


def render_blocks(text: str) -> str:
    """``text`` with every generated block replaced by what the code generates now.

    Raises:
        ValueError: a block names an unknown generator.
    """
    generators = _generators()

    def fill(m: re.Match[str]) -> str:
        kind = m.group("kind")
        if kind not in generators:
            raise ValueError(f"unknown generated block --{kind} (known: {sorted(generators)})")
        return f"{m.group('begin')}\n{generators[kind]()}\n{m.group('end')}"

    return _BLOCK.sub(fill, text)


def generated_kinds(text: str) -> list[str]:
    """The generated blocks a document holds (``markdown``, ``list``)."""
    return [m.group("kind") for m in _BLOCK.finditer(text)]


def _format_value(value: Any) -> str:
    from cvgl_ros.ros.params import yaml_float

    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return yaml_float(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return repr(value) if value == "" else str(value)


def _run(args: argparse.Namespace) -> int:
    from cvgl_ros.ros.errors import ParameterError
    from cvgl_ros.ros.params import PARAMETERS, configs_from_params, merged_values

    if args.write:
        for path in map(Path, args.write):
            text = path.read_text()
            if not generated_kinds(text):
                print(f"cvgl-ros params: {path} holds no generated block", file=sys.stderr)
                return 2
            path.write_text(render_blocks(text))
        return 0
    if args.markdown or args.list:
        print(_generators()["markdown" if args.markdown else "list"]())
        return 0
    try:
        values = merged_values(args.config, args.set)
        configs = configs_from_params(values)
    except ParameterError as exc:
        print(f"cvgl-ros params: error: {exc}", file=sys.stderr)
        return 2
    width = max(len(n) for n in configs.values)
    for name, value in configs.values.items():
        spec = PARAMETERS[name]
        note = "" if name in values else "  (default)"
        runtime = "  [run time]" if spec.runtime else ""
        print(f"{name:<{width}}  {_format_value(value)}{note}{runtime}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``params`` subcommand."""
    p = sub.add_parser(
        "params",
        help="the node's parameters (declared for a config; docs tables)",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    p.add_argument("--config", metavar="FILE", help="node parameter YAML")
    p.add_argument(
        "--set", action="append", default=[], metavar="NAME:=VALUE", help="parameter override"
    )
    p.add_argument("--markdown", action="store_true", help="print docs/NODE.md's table")
    p.add_argument("--list", action="store_true", help="print the README's compact list")
    p.add_argument(
        "--write", nargs="+", metavar="FILE", help="rewrite the generated blocks of FILEs"
    )
    p.set_defaults(func=_run)
