#!/usr/bin/env bash
# punchwire udp: 20 MB each way at once with 5% loss each way (no added delay).
exec "$(dirname "$0")/../cases/udp.sh" udp-loss5 openwrt openwrt -- --loss 5
