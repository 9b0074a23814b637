#!/usr/bin/env bash
# 98 with --protocol v012: after 3 refused connects (1 s apart) the -c side
# ends the session with an EOF, so the client is closed (soak finding 4).
exec env SOAK_PROTOCOLS=v012 "$(dirname "$0")/../../soak" --quick service
