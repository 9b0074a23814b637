#!/usr/bin/env bash
# punchwire tcp: clocks 1 s apart straddling a bucket edge (tcp_punch.py fails here).
exec "$(dirname "$0")/../cases/tcp.sh" tcp-skew-1-edge openwrt openwrt --edge --skew 1
