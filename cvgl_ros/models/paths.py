"""Where relative model paths point: one rule, independent of the working directory.

A node started by ``ros2 launch`` runs in whatever directory the user launched from, so a
relative ``engine_dir: engines`` resolved against the working directory finds the engines
from one shell and silently misses them (falling back to another backend) from the next.
Every model path of the learned path (``matcher.learned.checkpoint_path``,
``backbone_weights_path``, ``engine_dir``, ``depth.model.weights_path``, ``engine_path``)
therefore resolves like this:

1. absolute paths (and ``~/...``) are used as they are;
2. a relative path is relative to the **model directory**:

   a. ``$CVGL_ROS_MODEL_DIR`` when set (an absolute directory);
   b. else the source checkout the running ``cvgl_ros`` was imported from (the directory
      holding ``package.xml``: an editable pip install, ``colcon build --symlink-install``);
   c. else the installed package's share directory, ``share/cvgl_ros``: from the ament index
      (a plain ``colcon build``, which installs ``engines/*.onnx|engine|manifest.json``
      there), else under ``sys.prefix`` (a non-editable pip install).

So the default ``engine_dir: engines`` is the package's ``engines/`` directory in every case.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from cvgl_ros.models.errors import ModelError

LOGGER = logging.getLogger(__name__)

MODEL_DIR_ENV = "CVGL_ROS_MODEL_DIR"
PACKAGE_NAME = "cvgl_ros"


class ModelPathError(ModelError, ValueError):
    """A relative model path with no model directory to resolve it against."""


def source_checkout() -> Path | None:
    """The source tree the running package was imported from (``package.xml`` beside the
    ``cvgl_ros`` package directory, symlinks resolved), or None when installed."""
    root = Path(__file__).resolve().parents[2]
    xml = root / "package.xml"
    if xml.is_file() and f"<name>{PACKAGE_NAME}</name>" in xml.read_text(errors="replace"):
        return root
    return None


def package_share() -> Path | None:
    """The installed ``share/cvgl_ros``: from the ament index (colcon), else the one pip's
    ``data_files`` wrote under ``sys.prefix``; None when neither exists."""
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        try:
            return Path(get_package_share_directory(PACKAGE_NAME))
        except (PackageNotFoundError, LookupError, ValueError, OSError):
            pass
    except ImportError:
        pass
    prefix_share = Path(sys.prefix) / "share" / PACKAGE_NAME
    return prefix_share if (prefix_share / "package.xml").is_file() else None


def model_dir() -> tuple[Path, str]:
    """The directory relative model paths resolve against, and where it came from.

    Raises:
        ModelPathError: ``$CVGL_ROS_MODEL_DIR`` is set but not absolute, or there is neither a
            source checkout nor an installed share directory.
    """
    env = os.environ.get(MODEL_DIR_ENV, "").strip()
    if env:
        base = Path(env).expanduser()
        if not base.is_absolute():
            raise ModelPathError(f"{MODEL_DIR_ENV} must be an absolute directory, got {env!r}")
        return base, f"${MODEL_DIR_ENV}"
    checkout = source_checkout()
    if checkout is not None:
        return checkout, "the cvgl_ros source checkout"
    share = package_share()
    if share is not None:
        return share, "the installed share/cvgl_ros"
    raise ModelPathError(
        f"relative model paths need a model directory: set {MODEL_DIR_ENV} to an absolute "
        "directory or configure absolute paths (cvgl_ros is neither a source checkout nor "
        "in the ament index here)"
    )


def resolve_model_path(value: str | os.PathLike[str], what: str = "model path") -> Path:
    """Resolve a configured model path by the module's rule (``""`` is the model directory).

    Args:
        value: the configured path.
        what: the parameter it came from, for the log line.

    Raises:
        ModelPathError: a relative path with no model directory (see :func:`model_dir`).
    """
    text = os.fspath(value)
    path = Path(text).expanduser()
    if path.is_absolute():
        return path
    base, origin = model_dir()
    resolved = base / path
    LOGGER.info("%s %r -> %s (relative to %s)", what, text, resolved, origin)
    return resolved
