#!/usr/bin/env bash
# Interop: tcp_punch.py's stand-in (tests/py/tcp_punch_ref.py, written from
# SPEC 1) on B, punchwire tcp --reference on A, started together across a
# 30 ms RTT path (the reference has no other way to meet than its shared
# rendezvous, and on a near-zero-delay path its SYNs rarely cross).
exec "$(dirname "$0")/../cases/tcp.sh" tcp-reference-interop openwrt openwrt --reference-peer --offset 0 --bytes 20000 -- --delay 15
