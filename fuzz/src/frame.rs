//! `frame`: [`Repr::parse`] on any datagram, the views, and the emit round
//! trip, heartbeat tails included.
//!
//! Input: one datagram as received. Invariants:
//! * parse, the views' getters and emit never panic;
//! * `parse` accepts exactly what the format says (type byte, fixed
//!   lengths, `len ≤ MAX_PAYLOAD`) and rejects with the right error;
//! * `emit` writes exactly `buffer_len` bytes, refuses a shorter buffer,
//!   and what it wrote parses back to the same `Repr`;
//! * data frames, 3-byte acks and heartbeats with a udphp greeting re-emit
//!   byte-exact; a heartbeat's tail is everything after its greeting.

use punchwire_core::frame::{
    ACK_LEN, AckFrame, DataFrame, Error, HEADER_LEN, HeartbeatFrame, MAX_FRAME_LEN, MAX_PAYLOAD,
    Repr, Role,
};

pub fn run(data: &[u8]) {
    let parsed = Repr::parse(data);
    check_views(data, &parsed);
    let repr = match parsed {
        Ok(r) => r,
        Err(e) => return check_error(data, e),
    };
    let len = repr.buffer_len();
    assert!(len <= MAX_FRAME_LEN, "buffer_len {len} above the format");
    let mut buf = vec![0xa5u8; len + 4];
    if len > 0 {
        assert_eq!(repr.emit(&mut buf[..len - 1]), Err(Error::TooLong));
    }
    let n = repr.emit(&mut buf).expect("emit into buffer_len bytes");
    assert_eq!(n, len);
    assert!(
        buf[n..].iter().all(|&b| b == 0xa5),
        "emit wrote past its length"
    );
    let out = &buf[..n];
    assert_eq!(Repr::parse(out), Ok(repr), "emit does not parse back");
    match repr {
        Repr::Data(d) => {
            assert_eq!(out, data, "data frame does not re-emit byte-exact");
            assert_eq!(d.compressed, data[0] == b'C');
            assert_eq!(d.seq, u16::from_be_bytes([data[1], data[2]]));
            assert_eq!(d.len, u16::from_be_bytes([data[3], data[4]]));
            assert!(usize::from(d.len) <= MAX_PAYLOAD);
            assert_eq!(d.digest.0, data[5..HEADER_LEN]);
            assert_eq!(d.body, &data[HEADER_LEN..]);
        }
        Repr::Ack(seq) | Repr::Nack(seq) => {
            assert!(data.len() >= ACK_LEN);
            assert_eq!(out, &data[..ACK_LEN]);
            assert_eq!(seq, u16::from_be_bytes([data[1], data[2]]));
            assert_eq!(matches!(repr, Repr::Ack(_)), data[0] == b'A');
        }
        Repr::Heartbeat(h) => match h.role {
            Some(role) => {
                assert_eq!(out, data, "greeting heartbeat does not re-emit byte-exact");
                assert_eq!(&data[..8], role.greeting());
                assert_eq!(h.tail, &data[8..]);
            }
            None => {
                assert_eq!(out, b"H");
                assert!(h.tail.is_empty());
                assert!(
                    data.len() < 8
                        || (&data[..8] != Role::Connect.greeting()
                            && &data[..8] != Role::Listen.greeting())
                );
            }
        },
    }
}

/// Why `data` must be refused, and that this is the reason given.
fn check_error(data: &[u8], e: Error) {
    let Some(&first) = data.first() else {
        assert_eq!(e, Error::Truncated);
        return;
    };
    match first {
        b'U' | b'C' => {
            let expected = if data.len() < HEADER_LEN {
                Error::Truncated
            } else {
                assert!(
                    data.len() > MAX_FRAME_LEN
                        || usize::from(u16::from_be_bytes([data[3], data[4]])) > MAX_PAYLOAD,
                    "a well-formed data frame was refused with {e:?}"
                );
                Error::TooLong
            };
            assert_eq!(e, expected);
        }
        b'A' | b'N' => {
            assert!(
                data.len() < ACK_LEN,
                "a well-formed ack was refused with {e:?}"
            );
            assert_eq!(e, Error::Truncated);
        }
        b'H' => panic!("a heartbeat was refused with {e:?}"),
        other => assert_eq!(e, Error::UnknownType(other)),
    }
}

/// The checked views agree with `parse` and their getters never panic.
fn check_views(data: &[u8], parsed: &Result<Repr<'_>, Error>) {
    match DataFrame::new_checked(data) {
        Ok(f) => {
            let Ok(Repr::Data(d)) = parsed else {
                panic!("DataFrame accepts what parse refuses: {parsed:?}")
            };
            assert_eq!(
                (f.seq(), f.len(), f.is_compressed(), f.body(), f.digest()),
                (d.seq, d.len, d.compressed, d.body, d.digest)
            );
            assert_eq!(f.is_empty(), d.len == 0);
        }
        Err(_) => assert!(!matches!(parsed, Ok(Repr::Data(_)))),
    }
    match AckFrame::new_checked(data) {
        Ok(f) => assert!(matches!(parsed, Ok(Repr::Ack(s) | Repr::Nack(s)) if *s == f.seq())),
        Err(_) => assert!(!matches!(parsed, Ok(Repr::Ack(_) | Repr::Nack(_)))),
    }
    match HeartbeatFrame::new_checked(data) {
        Ok(f) => {
            let Ok(Repr::Heartbeat(h)) = parsed else {
                panic!("HeartbeatFrame accepts what parse refuses: {parsed:?}")
            };
            assert_eq!((f.role(), f.tail()), (h.role, h.tail));
        }
        Err(_) => assert!(!matches!(parsed, Ok(Repr::Heartbeat(_)))),
    }
}
