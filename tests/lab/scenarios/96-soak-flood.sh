#!/usr/bin/env bash
# Soak (quick): 50 000 junk datagrams/s (random, replayed, truncated, bit-flipped
# frames) from other ports of the peer's IP during a pw1 and a v012 transfer:
# byte-exact, >= 50 % of the unflooded goodput, RSS flat. Replayed heartbeats:
# pending/96-soak-flood-heartbeats.sh.
exec env SOAK_FLOOD_MIX=frames "$(dirname "$0")/../../soak" --quick flood
