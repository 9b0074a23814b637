#!/usr/bin/env python3
"""Tiny network probes for the punchwire NAT lab (run inside a lab namespace).

  nettool.py udp-send  DST DPORT --sport P [--count N] [--ttl T]
  nettool.py tcp-probe DST PORT [--timeout S]   -> prints open | refused | timeout
  nettool.py udp-probe DST PORT [--timeout S]   -> prints reply | refused | timeout
  nettool.py punch --port P --peer IP [--start-after S] [--duration S]
                   [--low-ttl T --low-ttl-for S]
      Naive UDP hole punch: bind P, send to PEER:P every 0.1 s starting after
      --start-after seconds (optionally with IP TTL T for the first
      --low-ttl-for seconds), and print every datagram received. Prints
      'RESULT received from IP:PORT' or 'RESULT nothing'; exit 0 either way.
  nettool.py pingstat FILE   summarise `ping -n` output: sent received loss_pct
                             dups rtt_min rtt_avg rtt_max mean_burst inversions
  nettool.py iperfstat FILE  summarise `iperf3 -J` output: goodput_mbit lost_pct
"""
import argparse
import errno
import socket
import sys
import time


def udp_send(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", a.sport))
    if a.ttl:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, a.ttl)
    for _ in range(a.count):
        s.sendto(b"nettool", (a.dst, a.dport))
        time.sleep(0.01)


def tcp_probe(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(a.timeout)
    try:
        s.connect((a.dst, a.port))
        print("open")
    except ConnectionRefusedError:
        print("refused")
    except (socket.timeout, TimeoutError):
        print("timeout")
    except OSError as e:
        print("error %s" % e)


def udp_probe(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((a.dst, a.port))
    s.settimeout(0.2)
    deadline = time.time() + a.timeout
    while time.time() < deadline:
        try:
            s.send(b"probe")
            s.recv(2048)
            print("reply")
            return
        except ConnectionRefusedError:
            print("refused")
            return
        except (socket.timeout, TimeoutError):
            pass
    print("timeout")


def punch(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", a.port))
    s.settimeout(0.1)
    t0 = time.time()
    got = None
    low = a.low_ttl > 0
    if low:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, a.low_ttl)
    n = 0
    while time.time() - t0 < a.duration:
        el = time.time() - t0
        if low and el >= a.start_after + a.low_ttl_for:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
            low = False
            print("%.2f ttl back to 64" % el, flush=True)
        if el >= a.start_after:
            try:
                s.sendto(b"punch %d" % n, (a.peer, a.port))
                n += 1
            except OSError as e:
                print("%.2f send error %s" % (el, e), flush=True)
        try:
            data, addr = s.recvfrom(2048)
            print("%.2f got %r from %s:%d" % (time.time() - t0, data, addr[0], addr[1]), flush=True)
            if addr[0] == a.peer and got is None:
                got = addr
        except (socket.timeout, TimeoutError):
            pass
        except OSError as e:
            if e.errno != errno.ECONNREFUSED:
                raise
    print("sent %d" % n)
    print("RESULT " + ("received from %s:%d" % got if got else "nothing"), flush=True)


def pingstat(a):
    import re
    sent = None
    seqs = []
    rtts = []
    for line in open(a.file):
        m = re.search(r"(\d+) packets transmitted", line)
        if m:
            sent = int(m.group(1))
        m = re.search(r"bytes from .*icmp_seq=(\d+).*time=([0-9.]+)", line)
        if m:
            seqs.append(int(m.group(1)))
            rtts.append(float(m.group(2)))
    uniq = sorted(set(seqs))
    sent = sent or 0
    got = len(uniq)
    # Runs of consecutive missing sequence numbers (ping counts from 1).
    missing = sorted(set(range(1, sent + 1)) - set(uniq))
    runs = 0
    prev = None
    for q in missing:
        if prev is None or q != prev + 1:
            runs += 1
        prev = q
    inv = sum(1 for x, y in zip(seqs, seqs[1:]) if y < x)
    print("sent=%d" % sent)
    print("received=%d" % got)
    print("loss_pct=%.2f" % (100.0 * (sent - got) / sent if sent else 100.0))
    print("dups=%d" % (len(seqs) - got))
    print("rtt_min=%.3f" % (min(rtts) if rtts else -1))
    print("rtt_avg=%.3f" % (sum(rtts) / len(rtts) if rtts else -1))
    print("rtt_max=%.3f" % (max(rtts) if rtts else -1))
    print("mean_burst=%.2f" % (len(missing) / runs if runs else 0))
    print("inversions=%d" % inv)


def iperfstat(a):
    import json
    end = json.load(open(a.file))["end"]
    print("goodput_mbit=%.1f" % (end["sum_received"]["bits_per_second"] / 1e6))
    print("lost_pct=%.3f" % end.get("sum", {}).get("lost_percent", 0.0))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("udp-send")
    q.add_argument("dst")
    q.add_argument("dport", type=int)
    q.add_argument("--sport", type=int, required=True)
    q.add_argument("--count", type=int, default=1)
    q.add_argument("--ttl", type=int, default=0)
    q = sub.add_parser("tcp-probe")
    q.add_argument("dst")
    q.add_argument("port", type=int)
    q.add_argument("--timeout", type=float, default=2.0)
    q = sub.add_parser("udp-probe")
    q.add_argument("dst")
    q.add_argument("port", type=int)
    q.add_argument("--timeout", type=float, default=2.0)
    q = sub.add_parser("punch")
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--peer", required=True)
    q.add_argument("--start-after", type=float, default=0.0)
    q.add_argument("--duration", type=float, default=4.0)
    q.add_argument("--low-ttl", type=int, default=0)
    q.add_argument("--low-ttl-for", type=float, default=0.0)
    q = sub.add_parser("pingstat")
    q.add_argument("file")
    q = sub.add_parser("iperfstat")
    q.add_argument("file")
    a = p.parse_args()
    {"udp-send": udp_send, "tcp-probe": tcp_probe, "udp-probe": udp_probe, "punch": punch,
     "pingstat": pingstat, "iperfstat": iperfstat}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
