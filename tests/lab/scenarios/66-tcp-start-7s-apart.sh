#!/usr/bin/env bash
# punchwire tcp: B starts 7 s after A (tcp_punch.py fails here).
exec "$(dirname "$0")/../cases/tcp.sh" tcp-start-7s-apart openwrt openwrt --offset 7
