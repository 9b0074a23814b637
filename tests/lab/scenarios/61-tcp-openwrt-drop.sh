#!/usr/bin/env bash
# punchwire tcp: OpenWrt router on A, silently dropping router on B.
exec "$(dirname "$0")/../cases/tcp.sh" tcp-openwrt-drop openwrt drop
