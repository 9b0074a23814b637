#!/usr/bin/env bash
# punchwire udp between two punchwire peers forced to udphp v0.12 (--protocol v012): 20 MB each way, byte-exact.
exec "$(dirname "$0")/../cases/udp.sh" udp-v012-between-punchwire openwrt openwrt --proto v012 --pw "--protocol v012"
