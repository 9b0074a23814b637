#!/usr/bin/env bash
# punchwire tcp: B starts 60 s after A (different buckets).
exec "$(dirname "$0")/../cases/tcp.sh" tcp-start-60s-apart openwrt drop --offset 60
