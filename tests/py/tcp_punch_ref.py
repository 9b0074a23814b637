#!/usr/bin/env python3
"""A stand-in for tcp_punch.py, written from SPEC section 1, for interop tests.

Behaviour of the reference: one bucket (the next one when its rendezvous is
under 10 s away), sleep until the rendezvous but at most 10 s, then for 5 s
call connect_ex every 50 ms on each of the bucket's 16 ports (local port =
remote port, SO_REUSEADDR + SO_REUSEPORT, non-blocking), and report every
socket that connected. No winner selection: every connection is kept.

For the test it then writes --message on every connected socket, reads all
of them until each closes (or --linger seconds pass) and prints what it
received on stdout. Exit 0 if at least one socket connected, 1 otherwise.

Usage: tcp_punch_ref.py PEER_IP [--message TEXT] [--linger S] [--clock-offset S]
"""
import argparse
import errno
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from schedule import MAX_CLOCK_ERROR, WINDOW, boundary, bucket, ports  # noqa: E402

MIN_RUN_WINDOW = 10
SPRAY_SECONDS = 5
INTERVAL = 0.05


def log(msg):
    print("tcp_punch_ref: " + msg, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("peer")
    ap.add_argument("--message", default="hello from tcp_punch_ref\n")
    ap.add_argument("--linger", type=float, default=10.0)
    ap.add_argument("--clock-offset", type=float, default=0.0)
    a = ap.parse_args()

    now = time.time() + a.clock_offset
    b = bucket(now)
    rendezvous = (b + 1) * WINDOW + MAX_CLOCK_ERROR
    if rendezvous - now < MIN_RUN_WINDOW:
        b += 1
        rendezvous = (b + 1) * WINDOW + MAX_CLOCK_ERROR
    plist = ports(boundary(b))
    wait = max(0.0, min(rendezvous - now, MIN_RUN_WINDOW))
    log("bucket %d, ports %s, sleeping %.1f s" % (b, plist, wait))
    time.sleep(wait)

    socks = {}
    for p in plist:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind(("", p))
        except OSError as e:
            log("port %d skipped: %s" % (p, e))
            s.close()
            continue
        s.setblocking(False)
        socks[p] = s

    connected = {}
    end = time.time() + SPRAY_SECONDS
    while time.time() < end and len(connected) < len(socks):
        for p, s in socks.items():
            if p in connected:
                continue
            err = s.connect_ex((a.peer, p))
            if err == errno.EISCONN or err == 0:
                connected[p] = s
                log("connected on port %d" % p)
        time.sleep(INTERVAL)

    if not connected:
        log("no connection")
        return 1
    for s in connected.values():
        s.setblocking(True)
        try:
            s.sendall(a.message.encode())
        except OSError:
            pass
    open_socks = list(connected.values())
    received = b""
    deadline = time.time() + a.linger
    while open_socks and time.time() < deadline:
        r, _, _ = select.select(open_socks, [], [], 0.2)
        for s in r:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if data:
                received += data
            else:
                open_socks.remove(s)
    sys.stdout.buffer.write(received)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
