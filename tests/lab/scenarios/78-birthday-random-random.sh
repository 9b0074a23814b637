#!/usr/bin/env bash
# lab-timeout: 200
# Both sides symmetric: birthday punching cannot meet (each probe leaves
# from a fresh random port the other filter does not know). Both sides
# must give up cleanly (exit 4) within the budget: 3 rounds, at most
# 3 x 2048 datagrams each.
set -euo pipefail
[[ -n ${LAB_BIRTHDAY:-} ]] || (cd "$(dirname "$0")/../../.." && cargo build -q --release -p punchwire-linux --example birthday)
exec "$(dirname "$0")/../cases/birthday.sh" birthday-random-random random random --expect-fail
