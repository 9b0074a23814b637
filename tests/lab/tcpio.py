#!/usr/bin/env python3
"""Full-duplex TCP file transfer for the lab's tunnel scenarios.

  tcpio.py serve   PORT SEND_FILE RECV_FILE [--expect N]
  tcpio.py connect PORT SEND_FILE RECV_FILE [--expect N]

serve accepts one connection on 127.0.0.1:PORT (0.0.0.0 if TCPIO_HOST is
set); connect connects to it, or to TCPIO_HOST:PORT
(retrying for up to 30 s while it refuses). Without --expect: sends
SEND_FILE and half-closes while writing everything received to RECV_FILE
until the peer closes (full duplex). With --expect N (for udphp.py peers,
which end the whole tunnel at the first EOF): serve first reads N bytes,
then sends SEND_FILE and closes; connect sends SEND_FILE, then reads until
N bytes arrived, then closes. Prints "elapsed SECONDS" on stdout: in full duplex, from the first to the
last byte received (the goodput window of the direction towards it).
"""
import os
import socket
import sys
import threading
import time


def transfer(conn, send_path, recv_path):
    start = time.monotonic()

    def sender():
        with open(send_path, "rb") as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                conn.sendall(chunk)
        conn.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=sender)
    t.start()
    first = last = None
    with open(recv_path, "wb") as out:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            last = time.monotonic()
            if first is None:
                first = last
            out.write(data)
    t.join()
    conn.close()
    # Goodput is measured where the bytes arrive: first to last byte.
    if first is not None and last > first:
        print("elapsed %.3f" % (last - first), flush=True)
    else:
        print("elapsed %.3f" % (time.monotonic() - start), flush=True)


def recv_exactly(conn, n, recv_path):
    got = 0
    with open(recv_path, "wb") as out:
        while got < n:
            data = conn.recv(min(65536, n - got))
            if not data:
                break
            out.write(data)
            got += len(data)


def ordered(conn, mode, send_path, recv_path, expect):
    start = time.monotonic()
    if mode == "serve":
        recv_exactly(conn, expect, recv_path)
        with open(send_path, "rb") as f:
            conn.sendall(f.read())
    else:
        with open(send_path, "rb") as f:
            conn.sendall(f.read())
        recv_exactly(conn, expect, recv_path)
    conn.close()
    print("elapsed %.3f" % (time.monotonic() - start), flush=True)


def main():
    mode, port, send_path, recv_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    expect = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[5] == "--expect" else None
    if mode == "serve":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0" if os.environ.get("TCPIO_HOST") else "127.0.0.1", port))
        s.listen(1)
        conn, _ = s.accept()
    else:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection((os.environ.get("TCPIO_HOST", "127.0.0.1"), port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    if expect is None:
        transfer(conn, send_path, recv_path)
    else:
        ordered(conn, mode, send_path, recv_path, expect)


if __name__ == "__main__":
    main()
