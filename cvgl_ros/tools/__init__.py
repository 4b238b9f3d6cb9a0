"""Command-line tools behind the single ``cvgl-ros`` entry point.

Each subcommand lives in its own module here (``demo``, ``replay``, ``eval``, ``export``,
``build_engine``, ``prefetch``, ``bench``, ``run``, ``synth``, ``viz``, ``train``,
``selfcheck``) exposing ``register(subparsers)``; :mod:`.cli` assembles them. The replay's
pieces are shared by several commands: :mod:`.bags` (reading bags), :mod:`.outputs` (poses.csv,
prior.csv, summary.json, the out-bag), :mod:`.replay_pipeline` and :mod:`.replay_node` (the two
replay modes); :mod:`.errors` holds the tools' user-facing errors.
"""
