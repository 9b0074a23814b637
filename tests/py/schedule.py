#!/usr/bin/env python3
"""tcp_punch.py's port schedule, written from SPEC §1, computed by CPython.

Usage: schedule.py T [T ...]   (unix times in seconds, decimals allowed)
Prints one JSON object per line:
{"unix_time": T, "bucket": B, "boundary": X, "ports": [...], "rendezvous_time": R}
"""
import json
import math
import random
import sys
from decimal import Decimal

WINDOW = 42
MAX_CLOCK_ERROR = 20
NUM_PORTS = 16
BASE_PORT = 30000
PORT_RANGE = 20000
LARGE_PRIME = 2654435761


def bucket(t):
    return math.floor((t - MAX_CLOCK_ERROR) / WINDOW)


def boundary(b):
    return (b * LARGE_PRIME) % 0xFFFFFFFF


def ports(seed):
    rng = random.Random(seed)
    out = set()
    while len(out) < NUM_PORTS:
        out.add(BASE_PORT + rng.randint(0, PORT_RANGE - 1))
    return sorted(out, reverse=True)


def schedule(t):
    b = bucket(t)
    x = boundary(b)
    return {"bucket": b, "boundary": x, "ports": ports(x),
            "rendezvous_time": (b + 1) * WINDOW + MAX_CLOCK_ERROR}


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        # Decimal keeps 2000000000.5 exact; floor works the same.
        s = schedule(Decimal(arg))
        s["unix_time"] = arg
        print(json.dumps(s))
