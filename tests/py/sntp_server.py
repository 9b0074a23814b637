#!/usr/bin/env python3
"""A one-shot SNTP server on 127.0.0.1 whose clock reads a fake unix time,
written from RFC 4330 with the stdlib only (struct, socket, time).

  sntp_server.py FAKE_UNIX_MS [--processing-ms N] [--forge-first] [--kiss CODE]

The fake clock starts at FAKE_UNIX_MS and runs with the system clock. The
server binds a free port, prints one line

  port PORT delta_ns DELTA

(fake time = time.time_ns() + DELTA), answers one request and exits (or
exits after 20 s without one).

  --processing-ms N  sleep N ms between receive and transmit timestamps
  --forge-first      first send a reply whose originate does not echo the
                     request, then the real one
  --kiss CODE        answer with a kiss-o'-death (stratum 0, LI 3, CODE)
"""
import argparse
import socket
import struct
import sys
import time

NTP_UNIX_OFFSET = 2_208_988_800
# LI VN mode, stratum, poll, precision, root delay, root dispersion, ref id,
# then four 64-bit timestamps.
HEADER = struct.Struct("!BBbbII4sQQQQ")


def ntp_timestamp(unix_ns):
    """32.32 NTP timestamp; seconds wrap into era 1 after 2036."""
    secs, ns = divmod(unix_ns, 1_000_000_000)
    frac = (ns << 32) // 1_000_000_000
    return (((secs + NTP_UNIX_OFFSET) % (1 << 32)) << 32) | frac


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fake_unix_ms", type=int)
    ap.add_argument("--processing-ms", type=int, default=0)
    ap.add_argument("--forge-first", action="store_true")
    ap.add_argument("--kiss")
    args = ap.parse_args()

    delta_ns = args.fake_unix_ms * 1_000_000 - time.time_ns()

    def fake_now():
        return time.time_ns() + delta_ns

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(20)
    print(f"port {sock.getsockname()[1]} delta_ns {delta_ns}", flush=True)

    while True:
        try:
            data, addr = sock.recvfrom(512)
        except socket.timeout:
            sys.exit("no request")
        t2 = fake_now()
        if len(data) < HEADER.size:
            continue
        flags, _, poll = data[0], data[1], struct.unpack("!b", data[2:3])[0]
        version, mode = (flags >> 3) & 7, flags & 7
        if mode != 3:
            continue
        (originate,) = struct.unpack("!Q", data[40:48])
        time.sleep(args.processing_ms / 1000)
        if args.kiss:
            leap, stratum, ref_id = 3, 0, args.kiss.encode()[:4].ljust(4, b"\0")
        else:
            leap, stratum, ref_id = 0, 1, b"LOCL"

        def reply(orig):
            return HEADER.pack(
                (leap << 6) | (version << 3) | 4,
                stratum,
                poll,
                -20,
                0,
                0,
                ref_id,
                ntp_timestamp(t2 - t2 % 1_000_000_000),
                orig,
                ntp_timestamp(t2),
                ntp_timestamp(fake_now()),
            )

        if args.forge_first:
            sock.sendto(reply(originate ^ 0x5A5A), addr)
        sock.sendto(reply(originate), addr)
        return


if __name__ == "__main__":
    main()
