#!/usr/bin/env bash
# lab-timeout: 1200
# `punchwire udp` birthday punching, the symmetric side is the -c side:
# openwrt (A, -l) / random (B, -c), 4 MB each way byte-exact, LAB_RUNS runs
# (3 in CI, 20 by hand): at least 95 % must pass within 30 s of A's start.
set -euo pipefail
REPEAT_MAX_MS=30000 exec "$(dirname "$0")/../cases/repeat.sh" "${LAB_RUNS:-3}" "$(( ${LAB_RUNS:-3} * 19 / 20 ))" udp udp-birthday-openwrt-random openwrt random --bytes 4000000 --pw "--silence 90"
