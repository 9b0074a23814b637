#!/usr/bin/env bash
# The flood of 96 plus replayed heartbeats of the peer from other ports of
# its IP, mid-transfer and before the tunnel starts (soak finding 1, fixed:
# moves need the current port silent, and the configured address always
# takes the tunnel back from a replayed first contact).
exec env SOAK_FLOOD_MIX="heartbeats early" "$(dirname "$0")/../../soak" --quick flood
