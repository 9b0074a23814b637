#!/usr/bin/env bash
# lab-timeout: 600
# Short path: one ISP hop, UDP tunnel openwrt/naked (1 MB each way), LAB_RUNS runs (3 in CI; LAB_RUNS=20 by hand),
# all must carry their session byte-exact.
set -euo pipefail
LAB_HOPS=1 exec "$(dirname "$0")/../cases/repeat.sh" "${LAB_RUNS:-3}" "${LAB_RUNS:-3}" udp udp-short-openwrt-naked openwrt naked --offset 0.5 --bytes 1000000
