#!/usr/bin/env bash
# punchwire tcp: A behind double NAT (home router + carrier NAT), B OpenWrt.
exec "$(dirname "$0")/../cases/tcp.sh" tcp-cgnat-openwrt cgnat openwrt
