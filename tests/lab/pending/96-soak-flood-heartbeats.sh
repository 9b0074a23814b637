#!/usr/bin/env bash
# PENDING (move to scenarios/ when a replayed heartbeat no longer moves the
# peer's port): the flood of 96 plus replayed heartbeats of the peer from other
# ports of its IP. Fails today for pw1: each replay carries the peer's token,
# so the tunnel moves its peer port to the flooder; started before the tunnel,
# the flood keeps the pair from ever connecting (tests/soak.md).
exec env SOAK_FLOOD_MIX="heartbeats early" "$(dirname "$0")/../../soak" --quick flood
