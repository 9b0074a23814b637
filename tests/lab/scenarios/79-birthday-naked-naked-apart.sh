#!/usr/bin/env bash
# lab-timeout: 1200
# The naked-router UDP limitation, healed by `punchwire udp`'s birthday
# punching: A (-l) starts 5 s after B (-c), so B's heartbeats reach router A
# first and its entry moves A's mapping (A is then a port-randomising side for
# this peer). The extra sockets send at the learned prime TTL. 4 MB each way
# byte-exact, LAB_RUNS runs (3 in CI, 10 by hand): at least 90 % must pass
# within 30 s of A's start.
set -euo pipefail
REPEAT_MAX_MS=30000 exec "$(dirname "$0")/../cases/repeat.sh" "${LAB_RUNS:-3}" "$(( ${LAB_RUNS:-3} * 9 / 10 ))" udp udp-birthday-naked-naked-apart naked naked --offset 5 --bytes 4000000 --pw "--silence 90"
