#!/usr/bin/env bash
# Soak (quick): kill -9 of a tunnel side mid-session and between sessions, a restart:
# the survivor notices and carries the next session (pw1, v012); kill -9 of a
# punchwire tcp side: the survivor's exit code.
exec "$(dirname "$0")/../../soak" --quick restart
