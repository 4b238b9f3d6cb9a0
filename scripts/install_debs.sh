#!/usr/bin/env bash
# Install the Debian packages the integration tests use: gpsd and gpsfake (gpsd-clients).
# Non-fatal: without them the gpsd tests skip with a reason.
set -uo pipefail
if command -v gpsd >/dev/null 2>&1 && command -v gpsfake >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "install_debs: not root and no sudo; gpsd tests will skip" >&2; exit 0; fi
fi
echo "install_debs: installing gpsd gpsd-clients"
export DEBIAN_FRONTEND=noninteractive
if ! ($SUDO apt-get update -qq && \
      $SUDO apt-get install -y -qq --no-install-recommends gpsd gpsd-clients) >/tmp/cvgl_apt.log 2>&1
then
    echo "install_debs: WARNING: apt-get failed (see /tmp/cvgl_apt.log); gpsd tests will skip" >&2
fi
# Debian starts gpsd as a service on install; our tests start their own on 127.0.0.1.
($SUDO systemctl stop gpsd.socket gpsd 2>/dev/null || true)
exit 0
