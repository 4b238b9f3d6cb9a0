"""``cvgl-ros bench``: run the benchmark suites, write JSON and a Markdown table."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import platform
import time
from pathlib import Path
from typing import Any

from cvgl_ros.tools.benchmarks import SUITES


def run_suites(names: list[str], quick: bool) -> dict[str, list[dict[str, Any]]]:
    """Run the named suites; returns rows per suite (a failing suite records its error)."""
    results: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        module_name = f"cvgl_ros.tools.benchmarks.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        print(f"bench: running suite '{name}'", flush=True)
        start = time.perf_counter()
        try:
            rows = importlib.import_module(module_name).run(quick=quick)
        except Exception as exc:  # a broken suite must not hide the others' results
            rows = [{"name": name, "metric": "error", "value": float("nan"), "notes": repr(exc)}]
        print(f"bench: suite '{name}' took {time.perf_counter() - start:.1f} s", flush=True)
        results[name] = rows
    return results


def markdown_table(results: dict[str, list[dict[str, Any]]]) -> str:
    """A Markdown table of every row."""
    lines = [
        "| suite | benchmark | metric | value | ratio vs baseline | goal | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for suite, rows in results.items():
        for r in rows:
            ratio = r.get("ratio")
            lines.append(
                f"| {suite} | {r['name']} | {r['metric']} | {float(r['value']):.4g} | "
                f"{'' if ratio is None else f'{float(ratio):.3g}'} | {r.get('goal', '')} | "
                f"{r.get('notes', '')} |"
            )
    return "\n".join(lines)


def _main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.suite or list(SUITES)
    results = run_suites(names, quick=args.quick)
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    table = markdown_table(results)
    (out / "results.md").write_text(table + "\n")
    print(table)
    print(f"bench: wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``bench`` subcommand."""
    p = sub.add_parser("bench", help="run benchmarks; JSON + Markdown results")
    p.add_argument("--out", default="bench-results", help="output directory")
    p.add_argument("--suite", action="append", choices=SUITES, help="suite(s) to run")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    p.set_defaults(func=_main)
