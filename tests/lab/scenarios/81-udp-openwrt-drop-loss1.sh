#!/usr/bin/env bash
# punchwire udp: 20 MB each way, OpenWrt / silently dropping router, 1% loss each way.
exec "$(dirname "$0")/../cases/udp.sh" udp-openwrt-drop-loss1 openwrt drop -- --loss 1
