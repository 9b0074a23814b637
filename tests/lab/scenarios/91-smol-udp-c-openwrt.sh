#!/usr/bin/env bash
# UDP tunnel: smoltcp -c side (behind host B, service on the TAP's kernel side)
# with Linux `punchwire udp -l` on A, through two OpenWrt routers; 4 MB each way.
exec "$(dirname "$0")/../cases/udp.sh" smol-udp-c-openwrt openwrt openwrt --smol-b --bytes 4000000
