#!/usr/bin/env bash
# Interop: punchwire udp -c on B, tests/py/udphp_ref.py (udphp.py v0.12 stand-in) as -l on A.
exec "$(dirname "$0")/../cases/udp.sh" udp-interop-udphp-l openwrt openwrt --ref-l --bytes 300000
