#!/usr/bin/env bash
# Interop: tests/py/udphp_ref.py (udphp.py v0.12 stand-in) as -c on B, punchwire udp -l on A.
exec "$(dirname "$0")/../cases/udp.sh" udp-interop-udphp-c openwrt openwrt --ref-c --bytes 300000
