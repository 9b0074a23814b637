#!/usr/bin/env bash
# punchwire udp: 2 MB each way at once (one frame in flight is RTT-bound: 20 MB
# would take minutes at 20 ms RTT), 5% loss, 10 ms one-way delay, 5% reordering.
exec "$(dirname "$0")/../cases/udp.sh" udp-loss5-delay-reorder openwrt openwrt --bytes 2000000 -- --loss 5 --delay 10 --jitter 1 --reorder 5
