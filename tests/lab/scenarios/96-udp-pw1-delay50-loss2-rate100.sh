#!/usr/bin/env bash
# punchwire udp, pw1: 20 MB each way at once over 50 ms RTT, 2 % loss each way, 100 Mbit/s.
exec "$(dirname "$0")/../cases/udp.sh" udp-pw1-delay50-loss2-rate100 openwrt openwrt --proto pw1 -- --delay 25 --loss 2 --rate 100
