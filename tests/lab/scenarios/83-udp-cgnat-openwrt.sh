#!/usr/bin/env bash
# punchwire udp: 20 MB each way, A behind double NAT.
exec "$(dirname "$0")/../cases/udp.sh" udp-cgnat-openwrt cgnat openwrt
