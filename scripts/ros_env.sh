#!/usr/bin/env bash
# Run a command with DDS confined to this machine: loopback discovery only and a private
# ROS domain id, so no process of ours ever talks to another host.
set -euo pipefail
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOCALHOST_ONLY=1
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "$@"
