#!/usr/bin/env bash
# lab-timeout: 600
# Birthday punching, the symmetric side second: openwrt (A) / random (B),
# 20 runs, at least 19 must confirm the path both ways within 30 s.
set -euo pipefail
[[ -n ${LAB_BIRTHDAY:-} ]] || (cd "$(dirname "$0")/../../.." && cargo build -q --release -p punchwire-linux --example birthday)
REPEAT_MAX_MS=30000 exec "$(dirname "$0")/../cases/repeat.sh" "${LAB_RUNS:-3}" "$(( ${LAB_RUNS:-3} * 19 / 20 ))" birthday birthday-openwrt-random openwrt random
