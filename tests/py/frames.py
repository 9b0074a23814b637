#!/usr/bin/env python3
"""udphp v0.12 data frames made and checked by CPython's struct/zlib/hashlib,
written from SPEC §2.

  frames.py make SEQ HEX_PAYLOAD   -> prints the frame as hex (C when the
                                      MIN_GAIN rule says so, else U)
  frames.py check HEX_FRAME        -> prints "ok SEQ LEN" or "bad REASON"
"""
import hashlib
import struct
import sys
import zlib

MIN_GAIN = 100
DIGEST_SIZE = 11


def make(seq, payload):
    digest = hashlib.md5(payload).digest()[:DIGEST_SIZE]
    kind, body = b"U", payload
    if len(payload) > MIN_GAIN:
        c = zlib.compress(payload)
        if len(c) < len(payload) - MIN_GAIN:
            kind, body = b"C", c
    return struct.pack("!sHH11s", kind, seq, len(payload), digest) + body


def check(frame):
    kind = frame[:1]
    if kind not in (b"U", b"C") or len(frame) < 16:
        return "bad type"
    seq, length, digest = struct.unpack("!HH11s", frame[1:16])
    body = frame[16:]
    if kind == b"C":
        try:
            body = zlib.decompress(body)
        except zlib.error as e:
            return "bad zlib " + str(e).replace(" ", "_")
    if len(body) != length:
        return "bad length"
    if hashlib.md5(body).digest()[:DIGEST_SIZE] != digest:
        return "bad digest"
    return "ok %d %d %s" % (seq, length, kind.decode())


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        print(make(int(sys.argv[2]), bytes.fromhex(sys.argv[3])).hex())
    elif cmd == "check":
        for h in sys.stdin.read().split():
            print(check(bytes.fromhex(h)))
    else:
        sys.exit("unknown command " + cmd)
