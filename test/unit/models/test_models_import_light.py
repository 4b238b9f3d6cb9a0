"""The ONNX Runtime path must not load torch (about 200 MB of memory on an edge device)."""

from __future__ import annotations

import subprocess
import sys


def test_learned_onnxruntime_path_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import cvgl_ros.models.learned, cvgl_ros.models.depth, cvgl_ros.models.preprocess\n"
        "import cvgl_ros.backends.ort_backend, cvgl_ros.models.factory\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
