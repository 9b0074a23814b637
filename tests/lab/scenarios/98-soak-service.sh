#!/usr/bin/env bash
# Soak (quick): the -c side's service refusing, vanishing mid-session, never reading
# (pw1): the client is closed within seconds, the next session works. v012:
# pending/98-soak-service-v012.sh.
exec env SOAK_PROTOCOLS=pw1 "$(dirname "$0")/../../soak" --quick service
