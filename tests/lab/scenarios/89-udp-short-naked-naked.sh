#!/usr/bin/env bash
# lab-timeout: 600
# Short path, one ISP hop, UDP tunnel naked/naked, LAB_RUNS runs (3 in CI;
# 20 by hand), all must carry their session. With the old fixed TTL 3 the
# priming heartbeats reached the peer's router and the tunnel deadlocked
# (0 of 10 runs); punchwire now learns TTL 2 here (core::pathprobe).
set -euo pipefail
LAB_HOPS=1 exec "$(dirname "$0")/../cases/repeat.sh" "${LAB_RUNS:-3}" "${LAB_RUNS:-3}" udp udp-short-naked-naked naked naked --offset 0.5 --bytes 1000000
