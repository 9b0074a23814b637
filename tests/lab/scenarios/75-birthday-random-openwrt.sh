#!/usr/bin/env bash
# lab-timeout: 1200
# `punchwire udp` reaches a port-randomising NAT with no option: the ordinary
# punch hears nothing, both sides escalate to birthday punching, and the pw1
# session runs over the socket and port that won (4 MB each way, byte-exact).
# random (A, -l) / openwrt (B, -c), LAB_RUNS runs (3 in CI, 20 by hand): at
# least 95 % must pass, connected within 30 s of A's start.
set -euo pipefail
REPEAT_MAX_MS=30000 exec "$(dirname "$0")/../cases/repeat.sh" "${LAB_RUNS:-3}" "$(( ${LAB_RUNS:-3} * 19 / 20 ))" udp udp-birthday-random-openwrt random openwrt --bytes 4000000 --pw "--silence 90"
