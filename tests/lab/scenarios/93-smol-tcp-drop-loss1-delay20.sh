#!/usr/bin/env bash
# smoltcp (behind host A) punches TCP to Linux `punchwire tcp` on B, openwrt/drop routers,
# 40 ms RTT and 1 % loss each way; 1 MB each way.
exec "$(dirname "$0")/../cases/tcp.sh" smol-tcp-drop-loss1 openwrt drop --smol-a -- --delay 20 --loss 1
