#!/usr/bin/env python3
"""A stand-in for udphp.py v0.12 (the UDP hole puncher), for interop tests.

Written from SPEC section 2 and the legible parts of seeds/003_*; it is not
the original source. It speaks the v0.12 wire format (U/C/A/N/H datagrams,
16-byte header, MD5-11 digest, zlib with MIN_GAIN 100) and copies the
reference's threads and timing, including its defects, ON PURPOSE, so that
punchwire is tested against the peer it will really meet:

- the ack wait races: the sender clears the ack event *after* sending, so an
  ack that arrives before the clear is lost and that frame waits the full 1 s;
  one frame in flight, resent every 1 s, 30 tries, then the program exits;
- "older frame" is `expected > seq`, wrong across the 65535 -> 0 wrap
  (a frame 65535 arriving when 0 is expected gets `N 0`, not a re-ack);
- an unknown type byte ends the whole program; datagrams are accepted from any
  source address; one TCP session per run (TCP EOF ends the program);
- an empty datagram (b'' is "in" b'AN'), or an A/N/U/C datagram too short for
  its header, raises in the receive thread, which dies; the process keeps
  running without a receiver, as the reference's would;
- heartbeats every 20-30 s at random; 10 sent without one received -> exit.

Usage:
  udphp_ref.py (-c | -l) [-d] TCP_PORT PEER_IP [UDP_PORT]
               [--max-payload N] [--local-udp-port N]
  udphp_ref.py --selftest [COMPAT_FRAMES_JSON]

  -c  "server" side: connect to the local TCP service 127.0.0.1:TCP_PORT
  -l  "client" side: listen on TCP_PORT (all addresses), carry the first
      accepted connection
  Both bind UDP UDP_PORT (default 5555) on all addresses and send to
  PEER_IP:UDP_PORT.
  --max-payload N      bytes read from TCP per frame (default 40000, the
                       reference's MAXBUF_SIZE); the receive buffer stays at
                       least 40000+16 as in the reference.
  --local-udp-port N   TEST-ONLY addition: bind UDP port N instead of UDP_PORT
                       (still send to PEER_IP:UDP_PORT), so that two copies can
                       run against each other on one host.
  --selftest           decode every frame of vectors/compat_frames.json with
                       the receiver's own logic; prints "selftest ok".

Exit status (the reference's is not known): 0 when the local TCP connection
ends with EOF, 1 for every other exit. Every exit logs its reason first.
"""
import argparse
import hashlib
import json
import logging
import os
import random
import socket
import struct
import sys
import threading
import time
import zlib

UDP_PORT_DEFAULT = 5555
MAXBUF_SIZE = 40000  # the reference's max TCP read per frame
HEADER_SIZE = 16  # 1 type + 2 seqno + 2 len + 11 digest
DIGEST_SIZE = HEADER_SIZE - 5
MIN_GAIN = 100  # compress only when it saves more than this
MAX_SEQNO_BITS = 0xFFFF
ACK_WAIT = 1.0  # seconds per try
SEND_TRIES = 30
HB_LIMIT = 10  # heartbeats sent without hearing one -> exit
MAX_UDP_PAYLOAD = 65507

# Shared state between threads, as in the reference (plain globals).
ACKED_SEQNO = -1
ACKED_OK = False
HB_COUNT = 0
TOT_ORIGDATA = 0
TOT_COMPDATA = 0

log = logging.getLogger()


def die(code, msg):
    """Log why, flush, and end the whole process from any thread."""
    log.error(msg)  # the reference logs every exit reason at ERROR
    for h in log.handlers:
        try:
            h.flush()
        except Exception:
            pass
    try:
        sys.stderr.flush()
    except Exception:
        pass
    os._exit(code)


# === Frame logic (shared by the threads and --selftest) ===


def calculate_digest(b):
    return hashlib.md5(b).digest()[:DIGEST_SIZE]


def attempt_compr(buf, buflen):
    """Returns (type, body, body_len): C only if it gains more than MIN_GAIN."""
    global TOT_ORIGDATA, TOT_COMPDATA
    TOT_ORIGDATA += buflen
    if buflen > MIN_GAIN:
        compr_buf = zlib.compress(buf, 6)
        compr_buflen = len(compr_buf)
        if compr_buflen < (buflen - MIN_GAIN):
            TOT_COMPDATA += compr_buflen
            return b"C", compr_buf, compr_buflen
    TOT_COMPDATA += buflen
    return b"U", buf, buflen


def attempt_decompr(buf):
    """A bad zlib stream gives a warning and an empty payload."""
    try:
        return zlib.decompress(buf)
    except Exception as e:
        log.warning("Decompress: " + str(e))
        return b""


def make_data_frame(seqno, payload):
    buflen = len(payload)
    digest = calculate_digest(payload)
    kind, body, blen = attempt_compr(payload, buflen)
    frame = struct.pack("!sHH{}s{}s".format(DIGEST_SIZE, blen), kind, seqno, buflen, digest, body)
    return frame, digest


def make_ack(positive, seqno):
    return struct.pack("!sH", b"A" if positive else b"N", seqno)


def parse_ack(data):
    """(ok, seqno) of an A/N datagram; raises struct.error when too short."""
    ok = data[:1] == b"A"
    (seqno,) = struct.unpack("!H", data[1:3])
    return ok, seqno


def decode_data_frame(data):
    """(seqno, sent_len, sent_digest, payload) of a U/C datagram; the payload
    is decompressed for C. Raises struct.error when shorter than the header."""
    sent_seqno, sent_buflen, sent_digest = struct.unpack("!HH{}s".format(DIGEST_SIZE), data[1:HEADER_SIZE])
    outbuf = data[HEADER_SIZE:]
    if data[:1] == b"C":
        outbuf = attempt_decompr(outbuf)
    return sent_seqno, sent_buflen, sent_digest, outbuf


def judge(expected_seqno, sent_seqno, sent_buflen, sent_digest, outbuf):
    """'ok' (write, A seq), 'Old' (A seq again) or 'Corrupted' (N expected).
    The 'Old' test is the reference's wrap-naive expected > seq."""
    if sent_seqno == expected_seqno and sent_buflen == len(outbuf) and sent_digest == calculate_digest(outbuf):
        return "ok"
    if expected_seqno > sent_seqno:
        return "Old"
    return "Corrupted"


# === Threads ===


class Heartbeat_Thread(threading.Thread):
    def __init__(self, udp_sock, peer, msg):
        super().__init__(name="HTBT: ")
        self.udp_sock, self.peer, self.msg = udp_sock, peer, msg

    def run(self):
        global HB_COUNT
        stat_count = 0
        while HB_COUNT < HB_LIMIT:
            HB_COUNT += 1  # reset to 0 by the receive thread on any H datagram
            try:
                self.udp_sock.sendto(self.msg, self.peer)
                log.debug("Sent: " + str(self.msg))
            except OSError as e:
                log.warning("Heartbeat send failed: {}".format(e))
            time.sleep(10 * (2 + random.random()))
            stat_count += 1
            if TOT_ORIGDATA > 0 and stat_count > 15:
                log.warning("Cumul. compr. ratio: {:.4}".format(TOT_COMPDATA / TOT_ORIGDATA))
                stat_count = 0
        die(1, "No heartbeat signal for a while ({} heartbeats unanswered): Exiting...".format(HB_LIMIT))


class UDPSend_Thread(threading.Thread):
    def __init__(self, udp_sock, peer, tcp_conn, ack_event, max_payload):
        super().__init__(name="SEND: ")
        self.udp_sock, self.peer, self.tcp_conn = udp_sock, peer, tcp_conn
        self.ack_event, self.max_payload = ack_event, max_payload

    def run(self):
        global ACKED_OK
        seqno = 0
        while True:
            try:
                inbuf = self.tcp_conn.recv(self.max_payload)
            except OSError as e:
                die(1, "TCP connection lost ({}): Exiting...".format(e))
            if not inbuf:
                die(0, "TCP connection closed (EOF): Exiting...")
            buflen = len(inbuf)
            data, digest = make_data_frame(seqno, inbuf)
            ACKED_OK = False
            t0 = time.monotonic()
            for retry in range(SEND_TRIES):
                self.udp_sock.sendto(data, self.peer)
                # The reference's race, kept on purpose: an ack that came in
                # before this clear() is forgotten and we wait the full 1 s.
                self.ack_event.clear()
                self.ack_event.wait(ACK_WAIT)
                if ACKED_SEQNO == seqno and ACKED_OK:
                    break
                log.warning(
                    "Retry sending: seqno={}.{} len={} retry={} digest={} inbuf={}".format(
                        seqno, ACKED_OK, buflen, retry + 1, digest.hex(), inbuf[:10]
                    )
                )
            else:
                die(1, "No valid response from UDP peer (seqno={}, {} tries): Exiting...".format(seqno, SEND_TRIES))
            log.debug(
                "Successfully sent: seqno={} len={} type={} retry={} wait={:.3f}s digest={} inbuf={}".format(
                    seqno, buflen, data[:1].decode(), retry, time.monotonic() - t0, digest.hex(), inbuf[:10]
                )
            )
            seqno = (seqno + 1) & MAX_SEQNO_BITS


class UDPReceive_Thread(threading.Thread):
    def __init__(self, udp_sock, peer, tcp_conn, ack_event, recv_size):
        super().__init__(name="RECV: ")
        self.udp_sock, self.peer, self.tcp_conn = udp_sock, peer, tcp_conn
        self.ack_event, self.recv_size = ack_event, recv_size

    def run(self):
        try:
            self.loop()
        except Exception:
            # The reference has no handler here: the thread dies with a
            # traceback and the other threads go on.
            log.exception("Receive thread died (as the reference's does; the process keeps running)")

    def loop(self):
        global HB_COUNT, ACKED_SEQNO, ACKED_OK
        expected_seqno = 0
        last = None  # (sent_seqno, sent_len, len, sent_digest, digest) of the last data frame
        while True:
            data, addr = self.udp_sock.recvfrom(self.recv_size)  # any source accepted
            msg_type = data[:1]
            if msg_type == b"H":
                HB_COUNT = 0
                log.debug("Keep alive packet={}".format(data))
            elif msg_type in b"AN":  # b'' is in b'AN' too: parse_ack raises
                ok, seq = parse_ack(data)
                ACKED_OK = ok
                ACKED_SEQNO = seq
                self.ack_event.set()
                log.debug("{}tive ack. for seqno={}".format("Posi" if ok else "Nega", seq))
            elif msg_type in b"CU":
                sent_seqno, sent_buflen, sent_digest, outbuf = decode_data_frame(data)
                digest = calculate_digest(outbuf)
                last = (sent_seqno, sent_buflen, len(outbuf), sent_digest, digest)
                verdict = judge(expected_seqno, sent_seqno, sent_buflen, sent_digest, outbuf)
                if verdict == "ok":
                    try:
                        self.tcp_conn.sendall(outbuf)
                    except OSError as e:
                        die(1, "TCP connection lost ({}): Exiting...".format(e))
                    self.udp_sock.sendto(make_ack(True, sent_seqno), self.peer)
                    log.debug(
                        "Valid data: seqno={} len={} digest={} outbuf={}".format(
                            expected_seqno, len(outbuf), digest.hex(), outbuf[:10]
                        )
                    )
                    expected_seqno = (expected_seqno + 1) & MAX_SEQNO_BITS
                else:
                    if verdict == "Old":
                        self.udp_sock.sendto(make_ack(True, sent_seqno), self.peer)
                    else:
                        self.udp_sock.sendto(make_ack(False, expected_seqno), self.peer)
                    log.warning(
                        "{} packet: sent_seqno={} ? expected_seqno={} / sent_len={} ? len={} / "
                        "sent_digest={} ? digest={}".format(
                            verdict, sent_seqno, expected_seqno, sent_buflen, len(outbuf),
                            sent_digest.hex(), digest.hex()
                        )
                    )
            else:
                if last:
                    s_seq, s_len, blen, s_dig, dig = last
                    detail = "sent_seqno={} ? expected_seqno={} / sent_len={} ? len={} / sent_digest={} ? digest={}".format(
                        s_seq, expected_seqno, s_len, blen, s_dig.hex(), dig.hex()
                    )
                else:
                    detail = "no data frame yet, expected_seqno={}".format(expected_seqno)
                log.warning("Type error: msg_type={} from {} data: {}".format(msg_type, addr, detail))
                die(1, "Invalid message type {}. Exiting...".format(msg_type))


# === --selftest ===


def selftest(path):
    with open(path) as f:
        vectors = json.load(f)["frames"]
    recipes = {"'abc'*2000": b"abc" * 2000, "40000 zero bytes": bytes(40000)}
    kinds = {}
    for i, v in enumerate(vectors):
        data = bytes.fromhex(v["frame_hex"])
        kind = v["kind"]
        where = "vector {} ({})".format(i, kind)
        assert data[:1] == kind.encode(), where + ": type byte"
        if kind in ("U", "C"):
            seq, slen, sdig, payload = decode_data_frame(data)
            want = bytes.fromhex(v["payload_hex"]) if v["payload_hex"] is not None else recipes[v["payload_recipe"]]
            assert seq == v["seqno"], where + ": seqno"
            assert slen == v["payload_len"] == len(payload), where + ": length"
            assert sdig == calculate_digest(payload), where + ": digest"
            assert hashlib.md5(payload).hexdigest() == v["payload_md5"], where + ": md5"
            assert payload == want, where + ": payload"
            assert judge(seq, seq, slen, sdig, payload) == "ok", where + ": receiver would not accept"
            # Our encoder picks the same type; U frames are byte-exact, and C
            # frames too as long as this zlib build matches the one used.
            frame, _ = make_data_frame(seq, payload)
            assert frame[:1] == data[:1], where + ": encoder chose another type"
            if kind == "U":
                assert frame == data, where + ": U re-encoding differs"
            elif frame != data:
                print("note: {}: C bytes differ from the vector (other zlib build), payload matches".format(where))
        elif kind in ("A", "N"):
            ok, seq = parse_ack(data)
            assert ok == (kind == "A") and seq == v["seqno"], where
            assert make_ack(ok, seq) == data, where + ": re-encoding"
        elif kind == "H":
            assert data in (b"HELOCLNT", b"HELOSRVR"), where
        else:
            raise AssertionError(where + ": unknown kind")
        kinds[kind] = kinds.get(kind, 0) + 1
    # The reference's decisions, defects included.
    p = b"x" * 10
    d = calculate_digest(p)
    assert judge(5, 5, 10, d, p) == "ok"
    assert judge(5, 4, 10, d, p) == "Old"  # re-ack
    assert judge(5, 6, 10, d, p) == "Corrupted"  # future: N expected
    assert judge(5, 5, 11, d, p) == "Corrupted"
    assert judge(0, 65535, 10, d, p) == "Corrupted"  # wrap-naive, as the reference
    bad = struct.pack("!sHH11s", b"C", 0, 10, d) + b"not zlib"
    assert decode_data_frame(bad)[3] == b""  # bad zlib -> warning, empty payload
    for short in (b"", b"A", b"A\x00", b"U" + bytes(14)):
        try:
            parse_ack(short) if short[:1] in b"AN" else decode_data_frame(short)
        except struct.error:
            pass
        else:
            raise AssertionError("short datagram {!r} did not raise".format(short))
    print("checked {} vectors: {}".format(len(vectors), ", ".join("{}={}".format(k, n) for k, n in sorted(kinds.items()))))
    print("selftest ok")


# === main ===


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--selftest":
        default = os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "vectors", "compat_frames.json"
        )
        logging.basicConfig(level=logging.ERROR)
        selftest(sys.argv[2] if len(sys.argv) > 2 else os.path.normpath(default))
        return 0

    parser = argparse.ArgumentParser(
        description="udphp.py v0.12 stand-in (test peer; reproduces the reference's defects on purpose)",
        epilog="""modes of operation:
  server mode: -c [-d] tcp_conn_port   client_public_ip [udp_port]
  client mode: -l [-d] tcp_listen_port server_public_ip [udp_port]
  self-check:  --selftest [compat_frames.json]""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-d", "--debug", help="print extra debug info to stderr", action="store_true")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("-c", "--connect", help="'server' side mode; connect to local TCP port", action="store_true")
    mode.add_argument("-l", "--listen", help="'client' side mode; listen to local TCP port", action="store_true")
    parser.add_argument("tcp_port", type=int, help="local TCP port to connect to (-c) or listen on (-l)")
    parser.add_argument("udp_pub_ip", help="peer's public IP")
    parser.add_argument("udp_port", type=int, nargs="?", default=UDP_PORT_DEFAULT,
                        help="UDP port for communication with peer (default %(default)s)")
    parser.add_argument("--max-payload", type=int, default=MAXBUF_SIZE,
                        help="max TCP bytes per frame (default %(default)s, the reference's MAXBUF_SIZE)")
    parser.add_argument("--local-udp-port", type=int, default=None,
                        help="TEST ONLY: bind this UDP port instead of UDP_PORT (still send to PEER:UDP_PORT)")
    args = parser.parse_args()
    if not 1 <= args.max_payload <= MAX_UDP_PAYLOAD - HEADER_SIZE:
        parser.error("--max-payload must be 1..{}".format(MAX_UDP_PAYLOAD - HEADER_SIZE))

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s.%(msecs)03d %(levelname)s: %(message)s",
        datefmt="%H:%M:%S",
    )

    server_mode = args.connect
    hb_msg = b"HELOCLNT" if server_mode else b"HELOSRVR"
    try:
        peer_ip = socket.gethostbyname(args.udp_pub_ip)
    except OSError as e:
        die(1, "Cannot resolve peer {}: {}".format(args.udp_pub_ip, e))
    peer = (peer_ip, args.udp_port)
    tcp_port = args.tcp_port
    local_udp = args.udp_port if args.local_udp_port is None else args.local_udp_port
    log.warning(
        "Server_Mode={} Local_TCP_Port={} Peer_Public_IP={} Peer_UDP_Port={}".format(
            server_mode, tcp_port, peer_ip, args.udp_port
        )
        + ("" if args.local_udp_port is None else " Local_UDP_Port={} (test-only)".format(local_udp))
    )

    udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp_sock.bind(("", local_udp))
    except OSError as e:
        die(1, "Cannot bind UDP port {}: {}".format(local_udp, e))

    # The reference starts heartbeats before the TCP side is ready, and the
    # receive thread only once it is (H datagrams queue up until then).
    Heartbeat_Thread(udp_sock, peer, hb_msg).start()

    tcp_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if server_mode:
        try:
            tcp_sock.connect(("127.0.0.1", tcp_port))
        except OSError as e:
            die(1, "Cannot connect to local TCP port {}: {}: Exiting...".format(tcp_port, e))
        log.warning("Connected to local TCP port {}".format(tcp_port))
        tcp_conn = tcp_sock
    else:
        tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp_sock.bind(("", tcp_port))
            tcp_sock.listen(1)
        except OSError as e:
            die(1, "Cannot listen on local TCP port {}: {}: Exiting...".format(tcp_port, e))
        log.warning("Listening for connection on local TCP port {}".format(tcp_port))
        tcp_conn, addr = tcp_sock.accept()
        log.warning("Accepted local TCP connection from {}:{}".format(*addr))

    ack_event = threading.Event()
    recv_size = max(MAXBUF_SIZE, args.max_payload) + HEADER_SIZE
    UDPSend_Thread(udp_sock, peer, tcp_conn, ack_event, args.max_payload).start()
    UDPReceive_Thread(udp_sock, peer, tcp_conn, ack_event, recv_size).start()
    return None  # the threads run on; the process ends through die()


if __name__ == "__main__":
    rc = main()
    if rc is not None:
        sys.exit(rc)
