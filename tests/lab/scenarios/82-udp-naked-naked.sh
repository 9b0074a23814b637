#!/usr/bin/env bash
# punchwire udp: 20 MB each way through routers without an input firewall (SPEC 3 collision; sides started within the 1 s priming window).
exec "$(dirname "$0")/../cases/udp.sh" udp-naked-naked naked naked --offset 0.5
