#!/usr/bin/env python3
"""Full-duplex TCP file transfer for the lab's tunnel scenarios.

  tcpio.py serve   PORT SEND_FILE RECV_FILE [--expect N]
  tcpio.py connect PORT SEND_FILE RECV_FILE [--expect N]
  tcpio.py serve-many PORT N RECV_PREFIX
  tcpio.py connect-many PORT SEND_FILE...

serve accepts one connection on 127.0.0.1:PORT (0.0.0.0 if TCPIO_HOST is
set); connect connects to it, or to TCPIO_HOST:PORT
(retrying for up to 30 s while it refuses). Without --expect: sends
SEND_FILE and half-closes while writing everything received to RECV_FILE
until the peer closes (full duplex). With --expect N (for udphp.py peers,
which end the whole tunnel at the first EOF): serve first reads N bytes,
then sends SEND_FILE and closes; connect sends SEND_FILE, then reads until
N bytes arrived, then closes. Prints "elapsed SECONDS" on stdout: in full duplex, from the first to the
last byte received (the goodput window of the direction towards it); full
duplex also prints "start T" (connected), "first T" and "last T" (bytes
received), T in CLOCK_MONOTONIC seconds, the same clock in every namespace.

serve-many accepts N connections at once, half-closes each at once and
writes what each sends to RECV_PREFIX.K (K in accept order); when all have
ended it prints one line per connection, "flow K BYTES SECONDS SHA256 LAST"
(first to last byte of that connection, and the last byte's CLOCK_MONOTONIC
time), then "aggregate BYTES SECONDS" (first byte of any to last byte of
all). connect-many opens one connection per SEND_FILE at once (threads),
prints "start SEND_FILE T" once connected, sends it, half-closes and reads
until EOF.

TCPIO_HOLD=1 (full duplex only): half-close only after the peer's EOF,
for tunnels that end a whole connection at the first EOF (kcptun's smux v1).

TCPIO_CC=NAME sets the congestion control of every TCP socket
(TCP_CONGESTION, e.g. cubic or bbr: the sysctl is read-only inside network
namespaces) and prints "cc NAME" (as read back) on stderr.
"""
import hashlib
import os
import socket
import sys
import threading
import time


def set_cc(sock):
    name = os.environ.get("TCPIO_CC")
    if not name:
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
    got = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    got = got.split(b"\0", 1)[0].decode()
    if got != name:
        sys.exit("tcpio: congestion control %r requested, socket has %r" % (name, got))
    print("cc %s" % got, file=sys.stderr, flush=True)


def connect(port):
    host = os.environ.get("TCPIO_HOST", "127.0.0.1")
    deadline = time.monotonic() + 30
    while True:
        conn = socket.socket()
        set_cc(conn)
        try:
            conn.connect((host, port))
            return conn
        except OSError:
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def listener(port, backlog):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    set_cc(s)
    s.bind(("0.0.0.0" if os.environ.get("TCPIO_HOST") else "127.0.0.1", port))
    s.listen(backlog)
    return s


def serve_many(port, n, prefix):
    s = listener(port, n)
    results = [None] * n

    def one(k, conn):
        set_cc(conn)
        conn.shutdown(socket.SHUT_WR)
        h = hashlib.sha256()
        got = 0
        first = last = None
        with open("%s.%d" % (prefix, k), "wb") as out:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                last = time.monotonic()
                if first is None:
                    first = last
                h.update(data)
                out.write(data)
                got += len(data)
        conn.close()
        results[k] = (got, first, last, h.hexdigest())

    threads = []
    for k in range(n):
        conn, _ = s.accept()
        t = threading.Thread(target=one, args=(k, conn))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    total = 0
    for k, (got, first, last, digest) in enumerate(results):
        total += got
        span = (last - first) if first is not None else 0.0
        print("flow %d %d %.3f %s %.6f" % (k, got, span, digest, last or 0.0))
    firsts = [r[1] for r in results if r[1] is not None]
    lasts = [r[2] for r in results if r[2] is not None]
    span = (max(lasts) - min(firsts)) if firsts else 0.0
    print("aggregate %d %.3f" % (total, span), flush=True)


def connect_many(port, paths):
    errors = []
    lock = threading.Lock()

    def one(path):
        try:
            conn = connect(port)
            with lock:
                sys.stdout.write("start %s %.6f\n" % (path, time.monotonic()))
                sys.stdout.flush()
            with open(path, "rb") as f:
                conn.sendall(f.read())
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass
            conn.close()
        except OSError as e:
            errors.append("%s: %s" % (path, e))

    threads = [threading.Thread(target=one, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("tcpio: " + "; ".join(errors))


def transfer(conn, send_path, recv_path):
    start = time.monotonic()
    # CLOCK_MONOTONIC is one clock for every network namespace: a benchmark
    # can take the sender's start and the receiver's last byte together.
    print("start %.6f" % start, flush=True)
    hold = os.environ.get("TCPIO_HOLD") == "1"
    done = threading.Event()

    def sender():
        with open(send_path, "rb") as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                conn.sendall(chunk)
        if hold:
            done.wait()
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
    done.set()
    t.join()
    conn.close()
    # Goodput is measured where the bytes arrive: first to last byte.
    if last is not None:
        print("first %.6f\nlast %.6f" % (first, last), flush=True)
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
    if sys.argv[1] == "serve-many":
        serve_many(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    if sys.argv[1] == "connect-many":
        connect_many(int(sys.argv[2]), sys.argv[3:])
        return
    mode, port, send_path, recv_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    expect = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[5] == "--expect" else None
    if mode == "serve":
        s = listener(port, 1)
        conn, _ = s.accept()
        set_cc(conn)
    else:
        conn = connect(port)
    if expect is None:
        transfer(conn, send_path, recv_path)
    else:
        ordered(conn, mode, send_path, recv_path, expect)


if __name__ == "__main__":
    main()
