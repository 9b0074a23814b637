#!/usr/bin/env bash
# punchwire udp, pw1: 20 MB each way with 5 % reordering, 2 % duplication, 1 % loss, 10 ms RTT.
exec "$(dirname "$0")/../cases/udp.sh" udp-pw1-reorder-dup openwrt openwrt --proto pw1 -- --delay 5 --reorder 5 --dup 2 --loss 1
