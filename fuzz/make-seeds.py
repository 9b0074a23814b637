#!/usr/bin/env python3
"""Writes the byte targets' seed corpus (fuzz/corpus/<target>/seed-*).

Run from anywhere: `python3 fuzz/make-seeds.py` (needs ../shared beside
the repository for the CPython frames). The operation targets' seeds
(sntp_client, punch_ops, tunnel_ops) are not made here: they are inputs
that fuzzing runs found, minimised with `cargo fuzz cmin`.
"""
import hashlib
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "vectors", "compat_frames.json")


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def md5_11(b):
    return hashlib.md5(b).digest()[:11]


frames = json.load(open(SHARED))["frames"]
for i, f in enumerate(frames):
    raw = bytes.fromhex(f["frame_hex"])
    name = "%02d-%s-%s" % (i, f["kind"], f.get("seqno", "h"))
    write("frame", name, raw)
    if f["kind"] == "C":
        # inflate: the declared length, then the zlib stream.
        write("inflate", name, raw[3:5] + raw[16:])

# Ours: checked acks, and heartbeats carrying the session tag (PWS + u32).
write("frame", "ack-checked", b"A\x02\x01" + struct.pack(">H", 0xFFFF ^ 0x0201))
write("frame", "nack-checked", b"N\x00\x07" + struct.pack(">H", 0xFFFF ^ 7))
write("frame", "hb-session", b"HELOCLNT" + b"PWS" + struct.pack(">I", 3))
write("frame", "hb-bare", b"H")
write("frame", "c-bomb", b"C\x00\x01\x00\x10" + md5_11(b"x" * 16) + zlib.compress(b"x" * 60000))

# inflate: a stream that is exactly the declared length, one that is one
# byte too long, an empty payload, and a truncated stream.
body = b"tunnel frame ack punch " * 40
z = zlib.compress(body, 6)
write("inflate", "exact", struct.pack(">H", len(body)) + z)
write("inflate", "one-too-long", struct.pack(">H", len(body) - 1) + z)
write("inflate", "empty", struct.pack(">H", 0) + zlib.compress(b""))
write("inflate", "truncated", struct.pack(">H", len(body)) + z[:-5])
write("inflate", "stored", struct.pack(">H", 300) + zlib.compress(bytes(range(256)) + b"x" * 44, 0))


def ntp(secs, frac=0):
    return struct.pack(">II", secs & 0xFFFFFFFF, frac)


def reply(flags=0x24, stratum=2, originate=0x0123456789ABCDEF, refid=b"GPS\0",
          receive=ntp(0xED000000), transmit=ntp(0xED000000, 1 << 31)):
    b = bytes([flags, stratum, 6, 0xE9]) + struct.pack(">II", 0x120, 0x340) + refid
    return b + receive + struct.pack(">Q", originate) + receive + transmit


rtt = struct.pack(">I", 25_000)
write("sntp_packet", "good", rtt + reply())
write("sntp_packet", "good-v3-ext", rtt + reply(flags=0x1C) + b"\0" * 20)
write("sntp_packet", "kiss-rate", rtt + reply(stratum=0, refid=b"RATE"))
write("sntp_packet", "alarm", rtt + reply(flags=0xE4))
write("sntp_packet", "era1", rtt + reply(transmit=ntp(0x00001000, 7)))
write("sntp_packet", "short", rtt + reply()[:47])
write("sntp_packet", "request", rtt + bytes([0x23]) + b"\0" * 39 + struct.pack(">Q", 1))

hello = b"PWH1" + struct.pack(">Q", 0x1122334455667788)
write("election_hello", "hello", hello)
write("election_hello", "hello-chosen", hello + b"$")
write("election_hello", "short", hello[:11])
write("election_hello", "other-magic", b"PWH2" + hello[4:])
