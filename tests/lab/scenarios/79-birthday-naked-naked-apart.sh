#!/usr/bin/env bash
# lab-timeout: 400
# The naked-router UDP limitation: B starts 5 s after A, so A's heartbeats
# reach router B first and its entry moves B's mapping (B is then a
# port-randomising side). A birthday round with the extra sockets at the
# learned prime TTL reaches it: LAB_RUNS runs (3 in CI, 10 by hand), 90 % must confirm within 30 s.
set -euo pipefail
[[ -n ${LAB_BIRTHDAY:-} ]] || (cd "$(dirname "$0")/../../.." && cargo build -q --release -p punchwire-linux --example birthday)
REPEAT_MAX_MS=30000 exec "$(dirname "$0")/../cases/repeat.sh" "${LAB_RUNS:-3}" "$(( ${LAB_RUNS:-3} * 9 / 10 ))" birthday birthday-naked-naked-apart naked naked --offset 5
