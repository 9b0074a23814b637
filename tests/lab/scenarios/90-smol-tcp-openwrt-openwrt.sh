#!/usr/bin/env bash
# smoltcp (smol-node on a TAP behind host A) punches TCP to Linux `punchwire tcp` on B
# through two OpenWrt routers; 1 MB each way.
exec "$(dirname "$0")/../cases/tcp.sh" smol-tcp-openwrt-openwrt openwrt openwrt --smol-a
