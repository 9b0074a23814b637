#!/usr/bin/env bash
# UDP tunnel, roles swapped: smoltcp -l side (behind host A, client on host A)
# with Linux `punchwire udp -c` on B, through two OpenWrt routers; 4 MB each way.
exec "$(dirname "$0")/../cases/udp.sh" smol-udp-l-openwrt openwrt openwrt --smol-a --bytes 4000000
