#!/usr/bin/env bash
# lab-timeout: 300
# Both sides symmetric: `punchwire udp`'s birthday punching cannot meet (each
# probe leaves from a fresh random port the other filter does not know). Both
# sides must escalate, log the give-up within the budget (3 rounds, at most
# 3 x 2048 datagrams each, 60-83 s) and exit 4 at the silence timeout.
set -euo pipefail
exec "$(dirname "$0")/../cases/udp-giveup.sh" udp-birthday-random-random random random
