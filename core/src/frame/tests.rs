extern crate std;

use super::*;
use crate::compress::Inflater;
use crate::digest::Digest;
use crate::vectors::{XorShift, compat_payload, load, unhex};
use std::vec;
use std::vec::Vec;

#[test]
fn every_compat_vector_decodes_and_re_emits() {
    let v = load("compat_frames.json");
    let frames = v["frames"].as_array().unwrap();
    assert!(frames.len() >= 11);
    let mut kinds = Vec::new();
    for case in frames {
        let bytes = unhex(case["frame_hex"].as_str().unwrap());
        let repr = Repr::parse(&bytes).unwrap_or_else(|e| panic!("{case}: {e}"));
        let kind = case["kind"].as_str().unwrap();
        kinds.push(kind.as_bytes()[0]);
        match (kind, repr) {
            ("U" | "C", Repr::Data(d)) => {
                let payload = compat_payload(case);
                assert_eq!(d.compressed, kind == "C");
                assert_eq!(u64::from(d.seq), case["seqno"].as_u64().unwrap());
                assert_eq!(usize::from(d.len), payload.len());
                assert_eq!(
                    case["payload_len"].as_u64().unwrap() as usize,
                    payload.len()
                );
                let md5 = unhex(case["payload_md5"].as_str().unwrap());
                assert_eq!(&d.digest.0[..], &md5[..DIGEST_LEN]);
                if d.compressed {
                    let mut out = vec![0u8; usize::from(d.len)];
                    let n = Inflater::new().inflate(d.body, &mut out).unwrap();
                    assert_eq!(&out[..n], &payload[..]);
                } else {
                    assert_eq!(d.body, &payload[..]);
                }
                assert!(d.digest.matches(&payload));
            }
            ("A", Repr::Ack(seq)) | ("N", Repr::Nack(seq)) => {
                assert_eq!(u64::from(seq), case["seqno"].as_u64().unwrap());
            }
            ("H", Repr::Heartbeat(h)) => {
                assert!(h.role.is_some());
                assert!(h.tail.is_empty());
            }
            (k, r) => panic!("kind {k} parsed as {r:?}"),
        }
        // Emitting the parsed frame gives back CPython's bytes exactly.
        let mut out = vec![0u8; repr.buffer_len()];
        assert_eq!(repr.emit(&mut out), Ok(bytes.len()));
        assert_eq!(out, bytes, "{kind} re-emits byte-exact");
    }
    for k in b"UCANH" {
        assert!(kinds.contains(k), "no vector of type {}", *k as char);
    }
}

#[test]
fn heartbeat_roles_follow_the_reference() {
    let hb = Repr::parse(b"HELOCLNT").unwrap();
    assert_eq!(hb, Repr::Heartbeat(HeartbeatRepr::plain(Role::Connect)));
    let hb = Repr::parse(b"HELOSRVR").unwrap();
    assert_eq!(hb, Repr::Heartbeat(HeartbeatRepr::plain(Role::Listen)));
    // Anything starting with H is a heartbeat; a punchwire tail is kept.
    match Repr::parse(b"HELOSRVRpw1\x01").unwrap() {
        Repr::Heartbeat(h) => {
            assert_eq!(h.role, Some(Role::Listen));
            assert_eq!(h.tail, b"pw1\x01");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        Repr::parse(b"H"),
        Ok(Repr::Heartbeat(HeartbeatRepr {
            role: None,
            tail: &[]
        }))
    );
}

#[test]
fn malformed_frames_are_errors() {
    assert_eq!(Repr::parse(b""), Err(Error::Truncated));
    assert_eq!(Repr::parse(b"A\x00"), Err(Error::Truncated));
    assert_eq!(Repr::parse(b"N"), Err(Error::Truncated));
    assert_eq!(Repr::parse(b"U\x00\x01\x00\x05"), Err(Error::Truncated));
    assert_eq!(Repr::parse(b"C"), Err(Error::Truncated));
    assert_eq!(Repr::parse(b"X123"), Err(Error::UnknownType(b'X')));
    assert_eq!(Repr::parse(b"u\x00\x00"), Err(Error::UnknownType(b'u')));
    // A declared length beyond MAX_PAYLOAD.
    let mut f = [0u8; HEADER_LEN];
    f[0] = b'U';
    f[3..5].copy_from_slice(&40_001u16.to_be_bytes());
    assert_eq!(Repr::parse(&f), Err(Error::TooLong));
    f[3..5].copy_from_slice(&40_000u16.to_be_bytes());
    assert!(Repr::parse(&f).is_ok());
    // A datagram longer than the format allows.
    let mut big = vec![0u8; MAX_FRAME_LEN + 1];
    big[0] = b'U';
    assert_eq!(Repr::parse(&big), Err(Error::TooLong));
    // Trailing bytes after an ack are ignored, as udphp.py does.
    assert_eq!(Repr::parse(b"A\x00\x05zz"), Ok(Repr::Ack(5)));
}

#[test]
fn emit_needs_room() {
    let repr = Repr::Ack(9);
    assert_eq!(repr.emit(&mut [0u8; 2]), Err(Error::TooLong));
    let mut buf = [0u8; 8];
    assert_eq!(repr.emit(&mut buf), Ok(3));
    assert_eq!(&buf[..3], b"A\x00\x09");
}

#[test]
fn emit_parse_round_trip() {
    let mut rng = XorShift(7);
    for _ in 0..500 {
        let len = rng.below(2000) as usize;
        let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let seq = rng.next() as u16;
        let compressed = rng.below(2) == 0;
        let repr = Repr::Data(DataRepr {
            compressed,
            seq,
            len: len as u16,
            digest: Digest::of(&payload),
            body: &payload,
        });
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf).unwrap();
        assert_eq!(Repr::parse(&buf), Ok(repr));
        for r in [Repr::Ack(seq), Repr::Nack(seq)] {
            let mut b = [0u8; ACK_LEN];
            r.emit(&mut b).unwrap();
            assert_eq!(Repr::parse(&b), Ok(r));
        }
    }
    let tail = b"capabilities";
    let hb = Repr::Heartbeat(HeartbeatRepr {
        role: Some(Role::Connect),
        tail,
    });
    let mut buf = vec![0u8; hb.buffer_len()];
    hb.emit(&mut buf).unwrap();
    assert_eq!(&buf[..8], b"HELOCLNT");
    assert_eq!(Repr::parse(&buf), Ok(hb));
}

#[test]
fn no_input_panics() {
    let mut rng = XorShift(0xdead_beef);
    let v = load("compat_frames.json");
    let mut seeds: Vec<Vec<u8>> = v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| unhex(c["frame_hex"].as_str().unwrap()))
        .collect();
    // Every prefix of every real frame.
    for s in &seeds {
        for n in 0..=s.len() {
            let _ = Repr::parse(&s[..n]);
        }
    }
    // Random bytes with a valid or random type byte, and bit-flipped frames.
    for i in 0..20_000 {
        let len = rng.below(64) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Some(first) = d.first_mut().filter(|_| i % 2 == 0) {
            *first = b"UCANH"[rng.below(5) as usize];
        }
        let _ = Repr::parse(&d);
        let s = &mut seeds[i % 11];
        if !s.is_empty() {
            let at = rng.below(s.len() as u64) as usize;
            s[at] ^= 1 << rng.below(8);
            if let Ok(Repr::Data(d)) = Repr::parse(s) {
                let mut out = vec![0u8; usize::from(d.len)];
                let _ = Inflater::new().inflate(d.body, &mut out);
            }
        }
    }
}
