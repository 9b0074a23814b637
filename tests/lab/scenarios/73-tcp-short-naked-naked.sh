#!/usr/bin/env bash
# lab-timeout: 900
# Short path: one ISP hop (wanem --hops 1), naked/naked, LAB_RUNS runs (3 in CI; 20 by hand), all must
# connect (issue 14: the fixed prime TTL 3 reaches the peer's router here).
set -euo pipefail
LAB_HOPS=1 exec "$(dirname "$0")/../cases/repeat.sh" "${LAB_RUNS:-3}" "${LAB_RUNS:-3}" tcp tcp-short-naked-naked naked naked --pw "--timeout 40"
