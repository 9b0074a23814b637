#!/usr/bin/env bash
# punchwire udp, pw1: 20 MB each way at once over 20 ms RTT with 1 % loss each way.
exec "$(dirname "$0")/../cases/udp.sh" udp-pw1-delay20-loss1 openwrt openwrt --proto pw1 -- --delay 10 --loss 1
