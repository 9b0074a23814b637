#!/usr/bin/env bash
# punchwire tcp through two OpenWrt-default routers (RST on new inbound), B 2 s after A.
exec "$(dirname "$0")/../cases/tcp.sh" tcp-openwrt-openwrt openwrt openwrt
