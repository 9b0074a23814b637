#!/usr/bin/env bash
# punchwire udp: 20 MB each way at once through two OpenWrt routers.
exec "$(dirname "$0")/../cases/udp.sh" udp-openwrt-openwrt openwrt openwrt --proto pw1
