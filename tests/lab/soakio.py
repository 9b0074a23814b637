#!/usr/bin/env python3
"""Traffic helpers of tests/soak and the soak lab scenarios (95-99).

  soakio.py stream serve|connect PORT BYTES SEED
      Full duplex: send BYTES seeded pseudo-random bytes and half-close,
      read until EOF. serve accepts one connection on 127.0.0.1:PORT;
      connect retries for 30 s while refused. Prints
      "sent N SHA", "recv N SHA", "elapsed S" (connected to last byte received).
      SOAK_PACE_MBIT=R in the environment paces the sender at R Mbit/s.
  soakio.py gen BYTES SEED        the same bytes on stdout ("sent N SHA" on stderr)
  soakio.py sink                  read stdin to EOF: "recv N SHA" on stdout
  soakio.py sha BYTES SEED        "sent N SHA" of the stream, without sending it
  soakio.py service PORT MODE     accept forever on 127.0.0.1:PORT, each
      connection in a thread; MODE echo (echo until EOF, then close) or
      sink-none (accept and never read; keep the connection open)
  soakio.py client PORT BYTES [TIMEOUT_S]
      Connect (one try), send BYTES random bytes while reading the echo,
      half-close, read until EOF/reset/TIMEOUT_S (default 30). Prints
      "client sent N recv M prefix yes|no end eof|reset|timeout|refused after S".
      Exit 0 only if every byte came back (recv == sent, prefix yes, eof).
  soakio.py memwatch OUT PID...   every second append "t pid VmHWM_kB VmRSS_kB"
      to OUT until every PID is gone
  soakio.py memsum OUT            "pid start_rss_kB peak_rss_kB hwm_kB" per pid
  soakio.py flood TARGET_IP PORT RATE SECONDS SNIFF_IF [--forge-restart]
                  [--no-heartbeats] [--start-when PATH]
      From many local UDP ports, RATE datagrams/s to TARGET_IP:PORT: random
      bytes; frames the tunnel sent to TARGET (sniffed on SNIFF_IF) replayed,
      truncated, and with one byte flipped (wrong digest/check); captured
      heartbeats replayed from other ports. --forge-restart also sends the
      captured heartbeat with another incarnation token. Prints what it sent.
"""
import hashlib
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

CHUNK = 65536


def stream_chunks(n, seed):
    rng = random.Random(seed)
    left = n
    while left > 0:
        k = min(CHUNK, left)
        yield rng.randbytes(k)
        left -= k


def sha_of(n, seed):
    h = hashlib.sha256()
    for c in stream_chunks(n, seed):
        h.update(c)
    return h.hexdigest()


def cmd_stream(mode, port, n, seed):
    if mode == "serve":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)
        conn, _ = s.accept()
        s.close()
    else:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    sent = {}

    pace = float(os.environ.get("SOAK_PACE_MBIT") or 0)

    def sender():
        h = hashlib.sha256()
        total = 0
        t0 = time.monotonic()
        for c in stream_chunks(n, seed):
            conn.sendall(c)
            h.update(c)
            total += len(c)
            if pace:
                ahead = t0 + total * 8 / (pace * 1e6) - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        conn.shutdown(socket.SHUT_WR)
        sent["n"], sent["sha"] = total, h.hexdigest()

    t = threading.Thread(target=sender, daemon=True)
    first = time.monotonic()
    t.start()
    h = hashlib.sha256()
    total = 0
    last = None
    while True:
        data = conn.recv(CHUNK)
        if not data:
            break
        last = time.monotonic()
        h.update(data)
        total += len(data)
    t.join()
    conn.close()
    print("sent %d %s" % (sent["n"], sent["sha"]), flush=True)
    print("recv %d %s" % (total, h.hexdigest()), flush=True)
    print("elapsed %.3f" % ((last - first) if first and last > first else 0.0), flush=True)


def cmd_gen(n, seed):
    h = hashlib.sha256()
    out = sys.stdout.buffer
    total = 0
    for c in stream_chunks(n, seed):
        out.write(c)
        h.update(c)
        total += len(c)
    out.flush()
    print("sent %d %s" % (total, h.hexdigest()), file=sys.stderr, flush=True)


def cmd_sink():
    h = hashlib.sha256()
    total = 0
    inp = sys.stdin.buffer
    first = last = None
    while True:
        data = inp.read1(CHUNK)
        if not data:
            break
        last = time.monotonic()
        if first is None:
            first = last
        h.update(data)
        total += len(data)
    print("recv %d %s" % (total, h.hexdigest()), flush=True)
    print("elapsed %.3f" % ((last - first) if first and last > first else 0.0), flush=True)


def cmd_service(port, mode):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    held = []
    while True:
        conn, _ = s.accept()
        print("service: accepted", flush=True)
        if mode == "sink-none":
            held.append(conn)
            continue

        def echo(c):
            try:
                while True:
                    d = c.recv(CHUNK)
                    if not d:
                        break
                    c.sendall(d)
                c.shutdown(socket.SHUT_WR)
            except OSError as e:
                print("service: %s" % e, flush=True)
            c.close()

        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def cmd_client(port, n, timeout):
    start = time.monotonic()
    data = os.urandom(n)
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        print("client sent 0 recv 0 prefix yes end refused after %.2f" % (time.monotonic() - start))
        return 1
    conn.settimeout(None)
    state = {"sent": 0}

    def sender():
        try:
            view = memoryview(data)
            while state["sent"] < n:
                k = conn.send(view[state["sent"] : state["sent"] + CHUNK])
                state["sent"] += k
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got = bytearray()
    end = "eof"
    deadline = start + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            end = "timeout"
            break
        conn.settimeout(left)
        try:
            d = conn.recv(CHUNK)
        except socket.timeout:
            end = "timeout"
            break
        except OSError:
            end = "reset"
            break
        if not d:
            break
        got += d
    elapsed = time.monotonic() - start
    prefix = data[: len(got)] == bytes(got)
    print(
        "client sent %d recv %d prefix %s end %s after %.2f"
        % (state["sent"], len(got), "yes" if prefix else "no", end, elapsed),
        flush=True,
    )
    conn.close()
    return 0 if (len(got) == n and prefix and end == "eof") else 1


def status_kb(pid):
    hwm = rss = None
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except OSError:
        return None
    return hwm, rss


def cmd_memwatch(out, pids):
    start = time.monotonic()
    with open(out, "a") as f:
        while True:
            alive = 0
            for p in pids:
                v = status_kb(p)
                if v and v[0] is not None:
                    alive += 1
                    f.write("%.1f %d %d %d\n" % (time.monotonic() - start, p, v[0], v[1]))
            f.flush()
            if not alive:
                return
            time.sleep(1)


def cmd_memsum(out):
    per = {}
    with open(out) as f:
        for line in f:
            _, p, hwm, rss = line.split()
            per.setdefault(p, []).append((int(hwm), int(rss)))
    for p, rows in per.items():
        print("%s %d %d %d %d" % (p, rows[0][1], max(r[1] for r in rows), rows[-1][0], len(rows)))


def sniff_frames(ifname, target_ip, port, store, stop):
    """Outgoing UDP datagrams to target_ip:port seen on ifname (AF_PACKET)."""
    # ETH_P_ALL: outgoing packets reach only the "all protocols" taps.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((ifname, 0))
    s.settimeout(0.2)
    tip = socket.inet_aton(target_ip)
    # Sniffing every packet costs the flooder's rate: stop once there is
    # enough to replay (or after 20 s).
    give_up = time.monotonic() + 20
    while not stop.is_set() and time.monotonic() < give_up:
        if len(store["frames"]) >= 512 and store["hb"]:
            break
        try:
            pkt, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        if addr[2] != socket.PACKET_OUTGOING or pkt[12:14] != b"\x08\x00":
            continue
        ip = pkt[14:]
        if len(ip) < 28 or ip[9] != 17 or ip[16:20] != tip:
            continue
        ihl = (ip[0] & 15) * 4
        dport = struct.unpack("!H", ip[ihl + 2 : ihl + 4])[0]
        if dport != port:
            continue
        payload = bytes(ip[ihl + 8 :])
        if b"PWC" in payload:
            store["hb"].append(payload)
            del store["hb"][:-32]
            store["hb_seen"] = store.get("hb_seen", 0) + 1
        else:
            store["frames"].append(payload)
            del store["frames"][:-512]


def cmd_flood(target, port, rate, seconds, ifname, forge, no_hb, start_when):
    store = {"hb": [], "frames": []}
    stop = threading.Event()
    th = threading.Thread(target=sniff_frames, args=(ifname, target, port, store, stop), daemon=True)
    th.start()
    socks = []
    for _ in range(64):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", 0))
        u.setblocking(False)
        socks.append(u)
    rng = random.Random(1234)
    dst = (target, port)
    counts = {"random": 0, "replay": 0, "truncated": 0, "flipped": 0, "heartbeat": 0, "forged": 0, "eagain": 0}
    junk = [rng.randbytes(rng.randrange(1, 1400)) for _ in range(256)]

    def pick():
        kind = rng.randrange(10)
        frames, hbs = store["frames"], store["hb"]
        if kind < 3 or not frames:
            return "random", junk[rng.randrange(len(junk))]
        f = frames[rng.randrange(len(frames))]
        if kind < 5:
            return "replay", f
        if kind < 7:
            return "truncated", f[: rng.randrange(0, max(1, len(f)))]
        if kind < 9 or not hbs or no_hb:
            if not f:
                return "random", junk[0]
            b = bytearray(f)
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
            return "flipped", bytes(b)
        h = hbs[rng.randrange(len(hbs))]
        if forge and rng.randrange(2):
            b = bytearray(h)
            i = b.find(b"PWC") + 5
            b[i : i + 8] = rng.randbytes(8)
            return "forged", bytes(b)
        return "heartbeat", h

    halt = []
    signal.signal(signal.SIGTERM, lambda *_: halt.append(1))
    # Sniff a little first so that replays exist from the start; with
    # --start-when PATH, sniff (B's first heartbeats too) until PATH exists.
    time.sleep(0.5)
    while start_when and not os.path.exists(start_when) and not halt:
        time.sleep(0.05)
    # Prepared datagrams, rebuilt every second from what the sniffer holds:
    # sending is then one sendto per datagram (the rate needs the CPU).
    pool_n = max(1000, rate // 10)
    kinds = ["random", "replay", "truncated", "flipped", "heartbeat", "forged"]
    pool = []
    next_pool = 0.0
    start = time.monotonic()
    end = start + seconds
    sent = 0
    i = 0
    while True:
        now = time.monotonic()
        if now >= end or halt:
            break
        if now >= next_pool:
            pool = [pick() for _ in range(pool_n)]
            pool = [(kinds.index(k), p) for k, p in pool]
            next_pool = now + 1.0
        due = int((now - start) * rate)
        n = min(due - sent, 2000)
        for _ in range(n):
            k, payload = pool[i % pool_n]
            try:
                socks[i & 63].sendto(payload, dst)
                counts[kinds[k]] += 1
            except BlockingIOError:
                counts["eagain"] += 1
            i += 1
        sent += n
        if n < 2000:
            time.sleep(0.001)
    stop.set()
    took = time.monotonic() - start
    total = sum(v for k, v in counts.items() if k != "eagain")
    print(
        "flood sent %d in %.1f s = %.0f/s (%s); sniffed %d frames %d heartbeats"
        % (
            total,
            took,
            total / took,
            " ".join("%s %d" % kv for kv in counts.items()),
            len(store["frames"]),
            len(store["hb"]),
        ),
        flush=True,
    )


def main():
    a = sys.argv[1:]
    cmd = a[0]
    if cmd == "stream":
        cmd_stream(a[1], int(a[2]), int(a[3]), int(a[4]))
    elif cmd == "gen":
        cmd_gen(int(a[1]), int(a[2]))
    elif cmd == "sink":
        cmd_sink()
    elif cmd == "sha":
        print("sent %d %s" % (int(a[1]), sha_of(int(a[1]), int(a[2]))))
    elif cmd == "service":
        cmd_service(int(a[1]), a[2])
    elif cmd == "client":
        sys.exit(cmd_client(int(a[1]), int(a[2]), float(a[3]) if len(a) > 3 else 30.0))
    elif cmd == "memwatch":
        cmd_memwatch(a[1], [int(p) for p in a[2:]])
    elif cmd == "memsum":
        cmd_memsum(a[1])
    elif cmd == "flood":
        cmd_flood(a[1], int(a[2]), int(a[3]), float(a[4]), a[5], "--forge-restart" in a, "--no-heartbeats" in a,
                  a[a.index("--start-when") + 1] if "--start-when" in a else None)
    else:
        sys.exit("soakio.py: unknown command %s" % cmd)


if __name__ == "__main__":
    main()
