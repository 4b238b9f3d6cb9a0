#!/usr/bin/env bash
# The oldest supported stack, for `make test-oldstack`: Debian bookworm's python3-opencv (4.6)
# and python3-numpy (1.24) with Debian's SciPy, PyYAML, pyproj, rasterio, requests and pytest,
# in a `python3 -m venv --system-site-packages` virtual environment that adds only what Debian
# does not package (the ROS 2 wheels, mercantile, gpsd-py3, rosbags, safetensors), pinned so
# that pip never installs numpy >= 2 or an OpenCV wheel over Debian's.
#
# Usage: scripts/setup_oldstack.sh [VENV]   (default .venv-oldstack; needs root or sudo for apt)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-oldstack}"
SYSTEM_PYTHON="${OLDSTACK_PYTHON:-/usr/bin/python3}"
DEBS=(python3-venv python3-numpy python3-opencv python3-scipy python3-yaml python3-pyproj
      python3-rasterio python3-requests python3-pytest python3-pytest-timeout python3-hypothesis)

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "setup_oldstack: needs root or passwordless sudo to apt-get install" \
             "${DEBS[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
missing=()
for deb in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$deb")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup_oldstack: apt-get install ${missing[*]}"
    log=/tmp/cvgl_oldstack_apt.log
    if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
        # A fresh machine may have no package lists yet.
        $SUDO apt-get update -qq >>"$log" 2>&1 || true
        if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1
        then
            echo "setup_oldstack: apt-get failed (see $log)" >&2
            tail -5 "$log" >&2
            exit 1
        fi
    fi
fi

test -x "$VENV/bin/python" || "$SYSTEM_PYTHON" -m venv --system-site-packages "$VENV"
numpy_version="$(dpkg-query -W -f='${Version}' python3-numpy | sed -e 's/^[0-9]*://' -e 's/[-+~].*//')"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
cat requirements/oldstack-constraints.txt > "$constraints"
echo "numpy==$numpy_version" >> "$constraints"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$constraints" -r requirements/oldstack.txt

# Fail here, not in a test, when the venv does not see Debian's builds.
"$VENV/bin/python" - <<'PY'
import cv2, numpy
ok = cv2.__file__.startswith("/usr/lib/python3/") and numpy.__file__.startswith("/usr/lib/python3/")
print(f"setup_oldstack: OpenCV {cv2.__version__} ({cv2.__file__}), numpy {numpy.__version__}")
raise SystemExit(0 if ok else "setup_oldstack: cv2/numpy do not come from Debian's packages")
PY
