#!/usr/bin/env bash
# PENDING (move to scenarios/ when a v0.12 -c side tells the -l side that its
# service refused): 98 with --protocol v012. Fails today: -c retries the
# refused connect every second and the client waits (tests/soak.md).
exec env SOAK_PROTOCOLS=v012 "$(dirname "$0")/../../soak" --quick service
