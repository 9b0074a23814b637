#!/usr/bin/env bash
# punchwire tcp: 5% loss each way, 20 ms one-way delay with jitter.
exec "$(dirname "$0")/../cases/tcp.sh" tcp-loss5-delay20 openwrt openwrt -- --loss 5 --delay 20 --jitter 2
