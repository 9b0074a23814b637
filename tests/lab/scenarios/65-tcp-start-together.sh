#!/usr/bin/env bash
# punchwire tcp: both sides started at the same moment.
exec "$(dirname "$0")/../cases/tcp.sh" tcp-start-together openwrt openwrt --offset 0
