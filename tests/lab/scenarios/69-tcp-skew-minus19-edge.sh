#!/usr/bin/env bash
# punchwire tcp: B's clock 19 s behind, A's clock just before a bucket edge.
exec "$(dirname "$0")/../cases/tcp.sh" tcp-skew-minus19-edge openwrt openwrt --edge --skew -19
