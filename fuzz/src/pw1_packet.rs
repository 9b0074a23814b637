//! `pw1_packet`: a pw1 datagram as it arrives — the header and frame
//! parsers, the ACK range iterator, the emit round trip, the heartbeat
//! tail parser, and a live [`Connection`]'s `handle_packet`.
//!
//! Invariants: nothing panics; every parsed frame re-emits to exactly
//! `buffer_len` bytes that parse back to the same frame; ACK ranges are
//! ordered (`low ≤ high`, descending, disjoint) and never more than the
//! frame's count + 1; a datagram whose check fails is refused before any
//! frame is looked at; a connection fed the datagram (with a valid check
//! and its own token stamped in, so the fuzzer reaches the frames) keeps
//! its accounting sane.

use punchwire_core::frame::pw1::{Frame, Frames, HEADER_LEN, Header};
use punchwire_core::frame::tail::Tail;
use punchwire_core::time::at_micros;
use punchwire_core::tunnel::pw1::{
    Chunk, Config, Connection, PeerParams, SentPacket, Storage, Stream, check,
};

pub fn run(data: &[u8]) {
    let _ = Tail::parse(data);
    let _ = Header::parse(data);
    if data.len() > HEADER_LEN {
        let payload = &data[HEADER_LEN..];
        let _ = Frames::validate(payload);
        for f in Frames::new(payload).flatten() {
            let mut out = vec![0u8; f.buffer_len()];
            assert_eq!(f.emit(&mut out), Ok(out.len()));
            let back: Vec<_> = Frames::new(&out).collect();
            assert_eq!(back.len(), 1);
            assert_eq!(back[0], Ok(f), "frame does not parse back");
            if let Frame::Ack(a) = f {
                let mut prev_low: Option<u64> = None;
                let mut n = 0;
                for (lo, hi) in a.ranges() {
                    assert!(lo <= hi);
                    if let Some(p) = prev_low {
                        assert!(hi + 1 < p, "ranges overlap or touch");
                    }
                    prev_low = Some(lo);
                    n += 1;
                }
                assert!(n <= a.extra_ranges() + 1);
            }
        }
    }
    // The same bytes as a packet for a live connection.
    let mut send = vec![Chunk::EMPTY; 8];
    let mut recv = vec![Chunk::EMPTY; 16];
    let mut sent = vec![SentPacket::EMPTY; 32];
    let mut streams = vec![Stream::EMPTY; 4];
    let storage = Storage {
        send: &mut send,
        recv: &mut recv,
        sent: &mut sent,
        streams: &mut streams,
    };
    let mut cfg = Config::new(true);
    cfg.initial_chunks = 2;
    let peer = PeerParams {
        token: 7,
        max_streams: 4,
        initial_chunks: 2,
        max_datagram: 1400,
    };
    let mut conn = Connection::new(cfg, storage, 42, peer, at_micros(0)).unwrap();
    assert!(conn.handle_packet(at_micros(1), data).is_err() || check::verify(data).is_some());
    let mut pkt = data.to_vec();
    if pkt.len() >= HEADER_LEN {
        pkt[0] = 0xF0;
        pkt[1..9].copy_from_slice(&42u64.to_be_bytes());
        pkt.extend_from_slice(&[0; check::LEN]);
        check::seal(&mut pkt);
        let _ = conn.handle_packet(at_micros(2), &pkt);
        conn.handle_timeout(at_micros(3));
        let mut buf = [0u8; 1400];
        let mut n = 0;
        while let Some(len) = conn.poll_transmit(at_micros(4), &mut buf) {
            assert!(len <= 1400);
            n += 1;
            assert!(n < 64, "one packet made the connection emit without end");
        }
        while conn.poll_opened().is_some() {}
        while conn.poll_event().is_some() {}
        assert!(conn.open_streams() <= 4);
    }
}
