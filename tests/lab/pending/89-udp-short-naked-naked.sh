#!/usr/bin/env bash
# lab-timeout: 600
# PENDING (move to scenarios/ when the tunnel primes with the learned TTL):
# short path, one ISP hop, UDP tunnel naked/naked, 20 runs, all must carry
# their session. With the fixed TTL 3 the priming heartbeats reach the
# peer's router and the tunnel deadlocks: 0 of 10 runs in the lab; with
# --ttl 2 (what core::pathprobe learns here) 10 of 10.
set -euo pipefail
LAB_HOPS=1 exec "$(dirname "$0")/../scenarios/../cases/repeat.sh" 20 20 udp udp-short-naked-naked naked naked --offset 0.5 --bytes 1000000
