#!/usr/bin/env bash
# lab-timeout: 900
# Short path: one ISP hop, openwrt/naked, LAB_RUNS runs (3 in CI; 20 by hand), all must connect.
set -euo pipefail
LAB_HOPS=1 exec "$(dirname "$0")/../cases/repeat.sh" "${LAB_RUNS:-3}" "${LAB_RUNS:-3}" tcp tcp-short-openwrt-naked openwrt naked --pw "--timeout 40"
