#!/usr/bin/env bash
# punchwire tcp: routers with no input firewall (the conntrack collision of SPEC 3).
exec "$(dirname "$0")/../cases/tcp.sh" tcp-naked-naked naked naked
