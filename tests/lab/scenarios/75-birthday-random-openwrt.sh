#!/usr/bin/env bash
# lab-timeout: 600
# Birthday punching (core::birthday, the `birthday` example on Linux sockets)
# reaches a port-randomising NAT: random (A) / openwrt (B), LAB_RUNS runs (3 in CI, 20 by hand), at
# least 95 % must confirm the path both ways within 30 s.(target >= 95 % within 30 s).
set -euo pipefail
[[ -n ${LAB_BIRTHDAY:-} ]] || (cd "$(dirname "$0")/../../.." && cargo build -q --release -p punchwire-linux --example birthday)
REPEAT_MAX_MS=30000 exec "$(dirname "$0")/../cases/repeat.sh" "${LAB_RUNS:-3}" "$(( ${LAB_RUNS:-3} * 19 / 20 ))" birthday birthday-random-openwrt random openwrt
