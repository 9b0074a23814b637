#!/usr/bin/env bash
# punchwire tcp: both routers silently drop new inbound.
exec "$(dirname "$0")/../cases/tcp.sh" tcp-drop-drop drop drop
