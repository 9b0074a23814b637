#!/usr/bin/env bash
# Soak: punchwire tcp > file on a full 2 MB tmpfs: exit 1 and an error line.
exec "$(dirname "$0")/../../soak" --quick disk
