"""Command-line tools behind the single ``cvgl-ros`` entry point.

Each subcommand lives in its own module here (``demo``, ``replay``, ``eval``, ``export``,
``build_engine``, ``prefetch``, ``bench``, ``run``, ``synth``, ``viz``, ``train``,
``selfcheck``) exposing ``register(subparsers)``; :mod:`.cli` assembles them.
"""
