"""Typed errors of the command-line tools.

``cvgl-ros`` prints the message of these (one line, no traceback): they describe a problem with
the user's input, not a bug.
"""

from __future__ import annotations


class ReplayError(RuntimeError):
    """The bag cannot be replayed (unreadable, or none of the needed topics)."""


__all__ = ["ReplayError"]
