//! Small state-machine cases with explicit times, the compat vectors, and a
//! fuzz-style robustness test. The two-peer simulation is in `sim.rs`.
extern crate std;

use super::*;
use crate::compress::{Inflater, MIN_GAIN};
use crate::digest::Digest;
use crate::frame::{DataRepr, HEADER_LEN, HeartbeatRepr, Repr, Role};
use crate::time::{Instant, at_millis};
use crate::vectors::{XorShift, compat_payload, load, unhex};
use std::vec;
use std::vec::Vec;

type Ep = Endpoint;

fn t(ms: u64) -> Instant {
    at_millis(ms)
}

fn config(role: Role) -> Config {
    Config {
        compress: false,
        ..Config::new(role)
    }
}

/// An endpoint at t = 0 whose first heartbeat has been drained.
fn endpoint(role: Role) -> Ep {
    let mut ep = Ep::new(config(role), t(0));
    let out = drain(&mut ep, t(0));
    assert_eq!(out, vec![role.greeting().to_vec()]);
    ep
}

fn drain<const W: usize, const F: usize>(ep: &mut Endpoint<W, F>, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; Endpoint::<W, F>::MAX_DATAGRAM];
    let mut out = Vec::new();
    while let Some(n) = ep.poll_transmit(now, &mut buf) {
        out.push(buf[..n].to_vec());
        assert!(out.len() < 100, "poll_transmit never ends");
    }
    out
}

fn events<const W: usize, const F: usize>(ep: &mut Endpoint<W, F>) -> Vec<Event> {
    core::iter::from_fn(|| ep.poll_event()).collect()
}

fn read_all<const W: usize, const F: usize>(ep: &mut Endpoint<W, F>) -> Vec<u8> {
    let mut out = vec![0u8; RECV_BUFFER];
    let n = ep.recv(&mut out);
    out.truncate(n);
    out
}

/// A `U` frame as udphp.py builds it.
fn u_frame(seq: u16, payload: &[u8]) -> Vec<u8> {
    let repr = Repr::Data(DataRepr {
        compressed: false,
        seq,
        len: payload.len() as u16,
        digest: Digest::of(payload),
        body: payload,
    });
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out).unwrap();
    out
}

fn ack(seq: u16) -> Vec<u8> {
    let mut v = vec![b'A'];
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

fn nack(seq: u16) -> Vec<u8> {
    let mut v = vec![b'N'];
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

/// Our checked form of an ack.
fn checked(kind: u8, seq: u16) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(!seq).to_be_bytes());
    v
}

fn data_of(datagram: &[u8]) -> DataRepr<'_> {
    match Repr::parse(datagram) {
        Ok(Repr::Data(d)) => d,
        other => panic!("not a data frame: {other:?}"),
    }
}

// ---- serial arithmetic ----

#[test]
fn older_is_the_half_range_behind_across_the_wrap() {
    assert!(seq_is_older(4, 5));
    assert!(seq_is_older(65535, 0), "the reference gets this wrong");
    assert!(seq_is_older(65534, 2));
    assert!(seq_is_older(0, 32767));
    assert!(!seq_is_older(5, 5));
    assert!(!seq_is_older(6, 5));
    assert!(!seq_is_older(0, 65535), "0 is ahead of 65535");
    assert!(
        !seq_is_older(5, 5 + 32768),
        "exactly half a range counts as future"
    );
}

// ---- heartbeats and liveness ----

#[test]
fn heartbeats_follow_the_role_and_the_schedule() {
    for role in [Role::Connect, Role::Listen] {
        let mut ep = endpoint(role);
        assert_eq!(ep.poll_timeout(), Some(t(15_000)));
        ep.handle_timeout(t(14_999));
        assert!(drain(&mut ep, t(14_999)).is_empty());
        ep.handle_timeout(t(15_000));
        assert_eq!(drain(&mut ep, t(15_000)), vec![role.greeting().to_vec()]);
        assert_eq!(ep.poll_timeout(), Some(t(30_000)));
        // A late wakeup schedules the next one from now.
        ep.handle_timeout(t(31_000));
        assert_eq!(drain(&mut ep, t(31_000)).len(), 1);
        assert_eq!(ep.poll_timeout(), Some(t(46_000)));
        assert_eq!(ep.stats().heartbeats_sent, 3);
    }
}

#[test]
fn silence_is_reported_once_and_ends_with_any_datagram() {
    let mut ep = endpoint(Role::Listen);
    ep.handle_timeout(t(119_999));
    assert!(!events(&mut ep).contains(&Event::PeerSilent));
    ep.handle_timeout(t(120_000));
    assert_eq!(events(&mut ep), vec![Event::PeerSilent]);
    assert!(ep.is_peer_silent());
    ep.handle_timeout(t(130_000));
    assert!(events(&mut ep).is_empty(), "reported once");
    // Even a garbage datagram proves the peer is there.
    assert!(ep.handle_datagram(t(131_000), b"?").is_err());
    assert_eq!(events(&mut ep), vec![Event::PeerHeard]);
    assert!(!ep.is_peer_silent());
    assert_eq!(
        ep.handle_datagram(t(132_000), b"HELOCLNT"),
        Ok(Received::Heartbeat {
            role: Some(Role::Connect)
        })
    );
    assert!(events(&mut ep).is_empty());
    ep.handle_timeout(t(251_999));
    assert!(events(&mut ep).is_empty());
    ep.handle_timeout(t(252_000));
    assert_eq!(events(&mut ep), vec![Event::PeerSilent]);
}

#[test]
fn first_datagram_is_peer_heard() {
    let mut ep = endpoint(Role::Connect);
    ep.handle_datagram(t(5), b"HELOSRVR").unwrap();
    ep.handle_datagram(t(6), b"HELOSRVR").unwrap();
    assert_eq!(events(&mut ep), vec![Event::PeerHeard]);
}

// ---- sender ----

#[test]
fn instant_ack_is_never_lost_and_the_next_frame_goes_at_once() {
    let mut ep = endpoint(Role::Connect);
    assert_eq!(ep.send(b"first"), 5);
    // The window is full: more bytes wait in the staging buffer.
    assert_eq!(ep.send(b"second"), 6);
    let out = drain(&mut ep, t(10));
    assert_eq!(out.len(), 1);
    assert_eq!(data_of(&out[0]).body, b"first");
    // The ack arrives at the same instant, before the driver sleeps.
    assert_eq!(
        ep.handle_datagram(t(10), &ack(0)),
        Ok(Received::Ack { seq: 0 })
    );
    let out = drain(&mut ep, t(10));
    assert_eq!(out.len(), 1, "no waiting for a timer");
    let d = data_of(&out[0]);
    assert_eq!((d.seq, d.body), (1, &b"second"[..]));
    // A zero RTT sample leaves the RTO at SRTT + the floor (25 ms).
    assert_eq!(ep.stats().srtt_us, Some(0));
    assert_eq!(ep.stats().rto_us, 25_000);
    assert_eq!(ep.poll_timeout(), Some(t(35)));
}

#[test]
fn delayed_ack_gives_an_rtt_sample() {
    let mut ep = endpoint(Role::Connect);
    ep.send(b"x");
    drain(&mut ep, t(0));
    assert_eq!(ep.poll_timeout(), Some(t(1_000)), "initial RTO");
    ep.handle_datagram(t(50), &ack(0)).unwrap();
    let s = ep.stats();
    assert_eq!(s.srtt_us, Some(50_000));
    assert_eq!(s.rttvar_us, 25_000);
    assert_eq!(s.rto_us, 150_000);
    assert_eq!(s.acks_received, 1);
    assert_eq!(ep.frames_in_flight(), 0);
    // Nothing left in flight: only the heartbeat timer remains.
    assert_eq!(ep.poll_timeout(), Some(t(15_000)));
}

#[test]
fn lost_frame_is_retransmitted_at_rto_with_backoff_and_karn() {
    let mut ep = endpoint(Role::Connect);
    ep.send(b"payload");
    let first = drain(&mut ep, t(0));
    ep.handle_timeout(t(999));
    assert!(drain(&mut ep, t(999)).is_empty());
    ep.handle_timeout(t(1_000));
    let second = drain(&mut ep, t(1_000));
    assert_eq!(second, first, "the very same bytes go again");
    assert_eq!(ep.stats().rto_us, 2_000_000, "doubled");
    assert_eq!(ep.poll_timeout(), Some(t(3_000)));
    ep.handle_timeout(t(3_000));
    assert_eq!(drain(&mut ep, t(3_000)), first);
    assert_eq!(ep.stats().rto_us, 4_000_000);
    ep.handle_timeout(t(7_000));
    assert_eq!(drain(&mut ep, t(7_000)), first);
    assert_eq!(ep.stats().rto_us, 5_000_000, "clamped to rto_max");
    ep.handle_datagram(t(7_020), &ack(0)).unwrap();
    let s = ep.stats();
    assert_eq!(
        s.srtt_us, None,
        "Karn: no sample from a retransmitted frame"
    );
    assert_eq!((s.retransmits, s.timeouts, s.data_frames_sent), (3, 3, 4));
    // The next frame, sent once, gives a sample that ends the backoff.
    ep.send(b"next");
    drain(&mut ep, t(8_000));
    ep.handle_datagram(t(8_030), &ack(1)).unwrap();
    assert_eq!(ep.stats().srtt_us, Some(30_000));
    // 30 ms + max(4 × 15 ms, 25 ms).
    assert_eq!(ep.stats().rto_us, 90_000);
}

#[test]
fn stale_and_early_acks_are_ignored() {
    let mut ep = endpoint(Role::Connect);
    ep.send(b"abc");
    // An ack for a frame built but not yet sent cannot be genuine.
    assert_eq!(
        ep.handle_datagram(t(0), &ack(0)),
        Ok(Received::StaleAck { seq: 0 })
    );
    drain(&mut ep, t(0));
    assert_eq!(
        ep.handle_datagram(t(1), &ack(65535)),
        Ok(Received::StaleAck { seq: 65535 })
    );
    assert_eq!(
        ep.handle_datagram(t(1), &ack(1)),
        Ok(Received::StaleAck { seq: 1 })
    );
    assert_eq!(ep.frames_in_flight(), 1);
    assert_eq!(
        ep.handle_datagram(t(2), &ack(0)),
        Ok(Received::Ack { seq: 0 })
    );
    assert_eq!(
        ep.handle_datagram(t(3), &ack(0)),
        Ok(Received::StaleAck { seq: 0 }),
        "a duplicated ack"
    );
    assert_eq!(ep.stats().stale_acks, 4);
}

#[test]
fn nack_for_the_frame_in_flight_retransmits_at_once() {
    let mut ep = endpoint(Role::Connect);
    ep.send(b"abc");
    let first = drain(&mut ep, t(0));
    assert_eq!(
        ep.handle_datagram(t(40), &nack(0)),
        Ok(Received::Nack {
            expected: 0,
            retransmit: true
        })
    );
    assert_eq!(drain(&mut ep, t(40)), first);
    assert_eq!(ep.stats().rto_us, 1_000_000, "no backoff on N");
    assert_eq!(ep.poll_timeout(), Some(t(1_040)), "timer restarted");
    ep.handle_datagram(t(80), &ack(0)).unwrap();
    assert_eq!(ep.stats().srtt_us, None, "Karn applies to fast retransmits");
    assert_eq!(ep.stats().fast_retransmits, 1);
}

#[test]
fn nack_for_the_next_seq_retransmits_and_is_not_an_ack() {
    let mut ep = endpoint(Role::Connect);
    ep.send(b"abc");
    let first = drain(&mut ep, t(0));
    // The peer holds seq 0 (our A was lost) and then saw a damaged frame.
    assert_eq!(
        ep.handle_datagram(t(40), &nack(1)),
        Ok(Received::Nack {
            expected: 1,
            retransmit: true
        })
    );
    assert_eq!(ep.frames_in_flight(), 1, "an N never confirms a frame");
    assert_eq!(drain(&mut ep, t(40)), first);
    // The copy draws a duplicate A from the peer.
    ep.handle_datagram(t(80), &ack(0)).unwrap();
    assert_eq!(ep.frames_in_flight(), 0);
}

#[test]
fn stale_and_duplicated_nacks_do_not_multiply_copies() {
    let mut ep = endpoint(Role::Connect);
    ep.send(b"a");
    drain(&mut ep, t(0));
    ep.handle_datagram(t(100), &ack(0)).unwrap(); // SRTT 100 ms
    ep.send(b"b");
    drain(&mut ep, t(200));
    // N for an older or far seq: stale.
    for e in [0u16, 5, 40000] {
        assert_eq!(
            ep.handle_datagram(t(210), &nack(e)),
            Ok(Received::Nack {
                expected: e,
                retransmit: false
            })
        );
    }
    assert!(drain(&mut ep, t(210)).is_empty());
    // Within half an SRTT of the last copy an N answers an earlier copy.
    let r = ep.handle_datagram(t(249), &nack(1)).unwrap();
    assert_eq!(
        r,
        Received::Nack {
            expected: 1,
            retransmit: false
        }
    );
    let r = ep.handle_datagram(t(250), &nack(1)).unwrap();
    assert_eq!(
        r,
        Received::Nack {
            expected: 1,
            retransmit: true
        }
    );
    assert_eq!(drain(&mut ep, t(250)).len(), 1);
    assert_eq!(
        ep.handle_datagram(t(251), &nack(1)),
        Ok(Received::Nack {
            expected: 1,
            retransmit: false
        }),
        "a duplicated N right after the copy"
    );
    assert!(drain(&mut ep, t(251)).is_empty());
}

#[test]
fn retransmit_limit_stops_the_sender() {
    let mut ep = Ep::new(
        Config {
            max_retries: 2,
            rto_initial: Milliseconds(100),
            ..config(Role::Connect)
        },
        t(0),
    );
    ep.send(b"doomed");
    let mut now = 0;
    let mut copies = drain(&mut ep, t(0)).len() - 1; // minus the heartbeat
    while let Some(at) = ep.poll_timeout() {
        now = crate::time::micros(at) / 1000;
        if now > 10_000 {
            break;
        }
        ep.handle_timeout(at);
        copies += drain(&mut ep, at).iter().filter(|d| d[0] == b'U').count();
        if ep.is_failed() {
            break;
        }
    }
    assert_eq!(copies, 3, "one send and two retransmissions");
    assert!(ep.is_failed());
    assert_eq!(
        events(&mut ep),
        vec![Event::RetransmitLimit { seq: 0 }],
        "at t={now}"
    );
    assert_eq!(ep.send(b"more"), 0);
    assert_eq!(ep.send_capacity(), 0);
}

#[test]
fn send_takes_what_fits_and_frames_up_to_frame_size() {
    let mut ep = Ep::new(
        Config {
            frame_size: 100,
            ..config(Role::Listen)
        },
        t(0),
    );
    drain(&mut ep, t(0));
    assert_eq!(ep.send_capacity(), 200);
    let data: Vec<u8> = (0..500u32).map(|i| i as u8).collect();
    assert_eq!(ep.send(&data), 200, "one frame in flight, one staged");
    assert_eq!(ep.send_capacity(), 0);
    assert_eq!(ep.send(&data[200..]), 0);
    let out = drain(&mut ep, t(0));
    assert_eq!(data_of(&out[0]).body, &data[..100]);
    ep.handle_datagram(t(1), &ack(0)).unwrap();
    assert_eq!(ep.send_capacity(), 100);
    let out = drain(&mut ep, t(1));
    assert_eq!(data_of(&out[0]).body, &data[100..200]);
    // frame_size above FRAME_CAP is clamped.
    let ep = Ep::new(
        Config {
            frame_size: 60_000,
            ..config(Role::Listen)
        },
        t(0),
    );
    assert_eq!(ep.config().frame_size, DEFAULT_FRAME_SIZE);
}

// ---- receiver ----

#[test]
fn accepts_the_expected_frame_and_acks_it_with_check_bytes() {
    let mut ep = endpoint(Role::Listen);
    assert_eq!(
        ep.handle_datagram(t(1), &u_frame(0, b"hello")),
        Ok(Received::Data { seq: 0, len: 5 })
    );
    let out = drain(&mut ep, t(1));
    assert_eq!(out, vec![checked(b'A', 0)]);
    // udphp.py reads bytes 1..3 only; our parser agrees.
    assert_eq!(Repr::parse(&out[0]), Ok(Repr::Ack(0)));
    assert_eq!(ep.recv_available(), 5);
    assert_eq!(read_all(&mut ep), b"hello");
    assert_eq!(ep.expected_seq(), 1);
}

#[test]
fn lost_ack_gets_a_duplicate_ack_and_no_duplicate_bytes() {
    let mut ep = endpoint(Role::Listen);
    ep.handle_datagram(t(1), &u_frame(0, b"once")).unwrap();
    drain(&mut ep, t(1)); // the A is lost on the way
    assert_eq!(
        ep.handle_datagram(t(1_001), &u_frame(0, b"once")),
        Ok(Received::Duplicate { seq: 0 })
    );
    assert_eq!(drain(&mut ep, t(1_001)), vec![checked(b'A', 0)]);
    assert_eq!(read_all(&mut ep), b"once");
    assert_eq!(ep.stats().duplicates_received, 1);
}

#[test]
fn future_frame_gets_nack_expected() {
    let mut ep = endpoint(Role::Listen);
    assert_eq!(
        ep.handle_datagram(t(1), &u_frame(3, b"later")),
        Ok(Received::Future { seq: 3 })
    );
    assert_eq!(drain(&mut ep, t(1)), vec![checked(b'N', 0)]);
    assert_eq!(ep.recv_available(), 0);
}

#[test]
fn seq_wrap_old_frames_are_reacked_and_new_ones_accepted() {
    let mut ep = endpoint(Role::Listen);
    ep.set_seqs(0, 65534);
    for seq in [65534u16, 65535, 0, 1] {
        let p = [seq as u8; 3];
        assert_eq!(
            ep.handle_datagram(t(1), &u_frame(seq, &p)),
            Ok(Received::Data { seq, len: 3 })
        );
    }
    assert_eq!(ep.expected_seq(), 2);
    let acks = drain(&mut ep, t(1));
    assert_eq!(acks.len(), 4);
    // The reference calls 65535 "future" here (2 > 65535 is false) and
    // NACKs it forever; it is old and gets its ack again.
    assert_eq!(
        ep.handle_datagram(t(2), &u_frame(65535, b"zzz")),
        Ok(Received::Duplicate { seq: 65535 })
    );
    assert_eq!(drain(&mut ep, t(2)), vec![checked(b'A', 65535)]);
    assert_eq!(
        read_all(&mut ep),
        [254, 254, 254, 255, 255, 255, 0, 0, 0, 1, 1, 1]
    );
}

#[test]
fn sender_wraps_its_seq() {
    let mut ep = endpoint(Role::Connect);
    ep.set_seqs(65535, 0);
    ep.send(b"a");
    assert_eq!(data_of(&drain(&mut ep, t(0))[0]).seq, 65535);
    ep.handle_datagram(t(1), &ack(65535)).unwrap();
    ep.send(b"b");
    assert_eq!(data_of(&drain(&mut ep, t(1))[0]).seq, 0);
    assert_eq!(
        ep.handle_datagram(t(2), &ack(0)),
        Ok(Received::Ack { seq: 0 })
    );
}

#[test]
fn full_receive_buffer_withholds_the_ack_until_room_opens() {
    let mut ep = endpoint(Role::Listen);
    let big0 = vec![0xA5u8; 30_000];
    let big1 = vec![0x5Au8; 30_000];
    ep.handle_datagram(t(1), &u_frame(0, &big0)).unwrap();
    assert_eq!(drain(&mut ep, t(1)), vec![checked(b'A', 0)]);
    // 10 000 bytes free: frame 1 cannot be held, so it is not acked.
    assert_eq!(
        ep.handle_datagram(t(2), &u_frame(1, &big1)),
        Ok(Received::NoRoom { seq: 1 })
    );
    assert!(drain(&mut ep, t(2)).is_empty(), "no A, no N");
    assert_eq!(ep.expected_seq(), 1);
    // The local TCP side takes a little: still not enough room.
    let mut part = vec![0u8; 15_000];
    assert_eq!(ep.recv(&mut part), 15_000);
    assert!(drain(&mut ep, t(3)).is_empty());
    // Enough room now: nudge the sender with N expected.
    assert_eq!(ep.recv(&mut part), 15_000);
    assert_eq!(drain(&mut ep, t(4)), vec![checked(b'N', 1)]);
    assert_eq!(
        ep.handle_datagram(t(5), &u_frame(1, &big1)),
        Ok(Received::Data {
            seq: 1,
            len: 30_000
        })
    );
    assert_eq!(read_all(&mut ep), big1);
    assert_eq!(ep.stats().no_room, 1);
}

#[test]
fn compaction_keeps_bytes_in_order() {
    let mut ep = endpoint(Role::Listen);
    let mut expected = Vec::new();
    let mut got = Vec::new();
    let mut rng = XorShift(7);
    for seq in 0..60u16 {
        let p: Vec<u8> = (0..9_000).map(|_| rng.next() as u8).collect();
        // Take a bit less than arrives, so held bytes move around.
        assert!(matches!(
            ep.handle_datagram(t(1), &u_frame(seq, &p)),
            Ok(Received::Data { .. })
        ));
        expected.extend_from_slice(&p);
        let mut out = vec![0u8; 8_500];
        let n = ep.recv(&mut out);
        got.extend_from_slice(&out[..n]);
        drain(&mut ep, t(1));
    }
    got.extend(read_all(&mut ep));
    assert_eq!(got, expected);
}

#[test]
fn eof_is_an_empty_frame_after_all_data() {
    let mut a = endpoint(Role::Connect);
    let mut b = endpoint(Role::Listen);
    a.send(b"last words");
    a.close_send();
    assert_eq!(a.send(b"too late"), 0);
    let out = drain(&mut a, t(0));
    assert_eq!(out.len(), 1, "the end marker waits for the window");
    b.handle_datagram(t(1), &out[0]).unwrap();
    a.handle_datagram(t(2), &drain(&mut b, t(1))[0]).unwrap();
    let out = drain(&mut a, t(2));
    let d = data_of(&out[0]);
    assert_eq!((d.seq, d.len, d.body), (1, 0, &b""[..]));
    assert_eq!(
        b.handle_datagram(t(3), &out[0]),
        Ok(Received::Data { seq: 1, len: 0 })
    );
    assert!(!b.peer_finished(), "bytes before the end are still held");
    assert_eq!(events(&mut b), vec![Event::PeerHeard]);
    assert_eq!(read_all(&mut b), b"last words");
    assert!(b.peer_finished());
    assert_eq!(events(&mut b), vec![Event::PeerFinished]);
    assert!(!a.send_finished());
    a.handle_datagram(t(4), &drain(&mut b, t(3))[0]).unwrap();
    assert!(a.send_finished());
    assert_eq!(events(&mut a), vec![Event::PeerHeard, Event::SendFinished]);
}

// ---- bad datagrams ----

#[test]
fn malformed_and_forged_datagrams_are_counted_and_ignored() {
    let mut ep = endpoint(Role::Listen);
    ep.send(b"in flight");
    drain(&mut ep, t(0));
    let v = load("compat_frames.json");
    let zeros = v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["payload_len"] == 40_000)
        .map(|c| unhex(c["frame_hex"].as_str().unwrap()))
        .unwrap();
    // CPython's stream for 40 000 zeros, declared as 100 bytes at seq 0.
    let mut bomb = zeros.clone();
    bomb[1..3].copy_from_slice(&0u16.to_be_bytes());
    bomb[3..5].copy_from_slice(&100u16.to_be_bytes());
    // A C frame whose body is not zlib.
    let mut bad_zlib = u_frame(0, &[7u8; 200]);
    bad_zlib[0] = b'C';
    let mut bad_digest = u_frame(0, b"payload");
    bad_digest[HEADER_LEN] ^= 1;
    let mut short_body = u_frame(0, b"payload");
    short_body[4] = 8; // declares 8, carries 7
    let mut bad_check = checked(b'A', 0);
    bad_check[4] ^= 0x10;
    let mut c_to_a = zeros.clone();
    c_to_a[0] = b'A'; // a one-bit flip of 'C'
    let mut big = vec![0u8; crate::frame::MAX_FRAME_LEN + 1];
    big[0] = b'U';
    let cases: Vec<(Vec<u8>, DatagramError, bool)> = vec![
        (vec![], DatagramError::Truncated, false),
        (b"X".to_vec(), DatagramError::UnknownType(b'X'), false),
        (
            b"\x00\x00\x00".to_vec(),
            DatagramError::UnknownType(0),
            false,
        ),
        (b"A\x00".to_vec(), DatagramError::Truncated, false),
        (b"U\x00\x00\x00".to_vec(), DatagramError::Truncated, false),
        (big, DatagramError::TooLong, false),
        (bad_check, DatagramError::BadAck, false),
        (b"A\x00\x00\xff".to_vec(), DatagramError::BadAck, false),
        (c_to_a, DatagramError::BadAck, false),
        (
            bomb,
            DatagramError::Inflate(crate::compress::InflateError::TooLong),
            true,
        ),
        (
            bad_zlib,
            DatagramError::Inflate(crate::compress::InflateError::Corrupt),
            true,
        ),
        (bad_digest, DatagramError::DigestMismatch, true),
        (short_body, DatagramError::LengthMismatch, true),
    ];
    for (i, (d, err, nacked)) in cases.iter().enumerate() {
        assert_eq!(ep.handle_datagram(t(1), d), Err(*err), "case {i}");
        let out = drain(&mut ep, t(1));
        if *nacked {
            assert_eq!(out, vec![checked(b'N', 0)], "case {i}");
        } else {
            assert!(out.is_empty(), "case {i}: {out:?}");
        }
    }
    let s = ep.stats();
    assert_eq!(s.bad.total(), cases.len() as u64);
    assert_eq!(s.bad.bad_ack, 3);
    assert_eq!(s.bad.inflate, 2);
    assert_eq!(s.bad.unknown_type, 2);
    assert_eq!(ep.expected_seq(), 0);
    assert_eq!(ep.recv_available(), 0);
    assert_eq!(ep.frames_in_flight(), 1, "nothing acked our frame");
    // The endpoint carries on.
    assert!(matches!(
        ep.handle_datagram(t(2), &u_frame(0, b"fine")),
        Ok(Received::Data { seq: 0, len: 4 })
    ));
}

#[test]
fn a_bit_flipped_stale_ack_cannot_confirm_the_frame_in_flight() {
    let mut ep = endpoint(Role::Connect);
    ep.send(b"zero");
    drain(&mut ep, t(0));
    ep.handle_datagram(t(10), &checked(b'A', 0)).unwrap();
    ep.send(b"one");
    drain(&mut ep, t(10));
    // A duplicated `A 0` arrives late with the low seq bit flipped: it now
    // names seq 1, which the peer may never have received.
    let mut forged = checked(b'A', 0);
    forged[2] ^= 1;
    assert_eq!(
        ep.handle_datagram(t(20), &forged),
        Err(DatagramError::BadAck)
    );
    assert_eq!(ep.frames_in_flight(), 1);
    // The same flip in udphp.py's 3-byte form cannot be caught.
    assert_eq!(
        ep.handle_datagram(t(21), &forged[..3]),
        Ok(Received::Ack { seq: 1 })
    );
}

// ---- interop with udphp.py's frames ----

#[test]
fn every_compat_vector_is_handled_as_udphp_would() {
    let v = load("compat_frames.json");
    for case in v["frames"].as_array().unwrap() {
        let bytes = unhex(case["frame_hex"].as_str().unwrap());
        let mut ep = endpoint(Role::Listen);
        match case["kind"].as_str().unwrap() {
            "U" | "C" => {
                let seq = case["seqno"].as_u64().unwrap() as u16;
                let payload = compat_payload(case);
                ep.set_seqs(0, seq);
                assert_eq!(
                    ep.handle_datagram(t(1), &bytes),
                    Ok(Received::Data {
                        seq,
                        len: payload.len()
                    })
                );
                assert_eq!(drain(&mut ep, t(1)), vec![checked(b'A', seq)]);
                assert_eq!(read_all(&mut ep), payload);
                // Again: a duplicate, re-acked; one seq later: future.
                assert_eq!(
                    ep.handle_datagram(t(2), &bytes),
                    Ok(Received::Duplicate { seq })
                );
                ep.set_seqs(0, seq.wrapping_sub(1));
                assert_eq!(
                    ep.handle_datagram(t(3), &bytes),
                    Ok(Received::Future { seq })
                );
            }
            "A" => {
                assert_eq!(
                    ep.handle_datagram(t(1), &bytes),
                    Ok(Received::StaleAck { seq: 513 })
                );
                // And as a live ack.
                let mut ep = endpoint(Role::Listen);
                ep.set_seqs(513, 0);
                ep.send(b"x");
                drain(&mut ep, t(1));
                assert_eq!(
                    ep.handle_datagram(t(2), &bytes),
                    Ok(Received::Ack { seq: 513 })
                );
            }
            "N" => {
                assert_eq!(
                    ep.handle_datagram(t(1), &bytes),
                    Ok(Received::Nack {
                        expected: 7,
                        retransmit: false
                    })
                );
            }
            "H" => {
                let role = HeartbeatRepr::parse(
                    &crate::frame::HeartbeatFrame::new_checked(&bytes[..]).unwrap(),
                )
                .role;
                assert!(role.is_some());
                assert_eq!(
                    ep.handle_datagram(t(1), &bytes),
                    Ok(Received::Heartbeat { role })
                );
            }
            other => panic!("unknown kind {other}"),
        }
        assert_eq!(ep.stats().bad.total(), 0);
    }
}

/// Decodes a data frame the way udphp.py's receiver does.
fn udphp_decode(datagram: &[u8]) -> (u16, Vec<u8>) {
    let d = data_of(datagram);
    let payload = if d.compressed {
        let mut out = vec![0u8; usize::from(d.len)];
        let n = Inflater::new().inflate(d.body, &mut out).unwrap();
        assert_eq!(n, usize::from(d.len));
        // The MIN_GAIN rule.
        assert!(usize::from(d.len) > MIN_GAIN);
        assert!(d.body.len() < usize::from(d.len) - MIN_GAIN);
        out
    } else {
        d.body.to_vec()
    };
    assert_eq!(payload.len(), usize::from(d.len));
    assert!(d.digest.matches(&payload));
    (d.seq, payload)
}

#[test]
fn emitted_frames_decode_as_udphp_would() {
    let mut rng = XorShift(99);
    let random: Vec<u8> = (0..1_000).map(|_| rng.next() as u8).collect();
    let payloads: Vec<Vec<u8>> = vec![
        b"abc".repeat(2000),
        vec![0u8; 40_000],
        random,
        b"x".repeat(100), // compressible but not by more than MIN_GAIN
        b"hello tunnel\n".to_vec(),
    ];
    // Frames as large as udphp.py's, to compare like with like.
    let mut ep = Endpoint::<1, 40_000>::new(
        Config {
            frame_size: 40_000,
            compress: true,
            ..Config::new(Role::Connect)
        },
        t(0),
    );
    assert_eq!(drain(&mut ep, t(0)), vec![b"HELOCLNT".to_vec()]);
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(ep.send(p), p.len());
        let out = drain(&mut ep, t(i as u64));
        assert_eq!(out.len(), 1);
        let (seq, got) = udphp_decode(&out[0]);
        assert_eq!(seq, i as u16);
        assert_eq!(&got, p);
        let compressed = out[0][0] == b'C';
        let compressible = i < 2;
        assert_eq!(compressed, cfg!(feature = "deflate") && compressible, "{i}");
        ep.handle_datagram(t(i as u64), &ack(seq)).unwrap();
    }
    let s = ep.stats();
    if cfg!(feature = "deflate") {
        assert_eq!(s.compressed_frames, 2);
        assert!(s.compression_ratio() < 0.1, "{}", s.compression_ratio());
    } else {
        assert_eq!(s.compression_ratio(), 1.0);
    }
}

// ---- memory ----

#[test]
fn endpoint_size_is_bounded() {
    let size = core::mem::size_of::<Endpoint>();
    std::println!(
        "size_of::<Endpoint>() = {size} bytes; Endpoint<1, 40000> = {}; Inflater = {}",
        core::mem::size_of::<Endpoint<1, 40_000>>(),
        core::mem::size_of::<Inflater>()
    );
    // Receive buffer + staging + one slot + inflater + bookkeeping.
    assert!(size >= RECV_BUFFER + 2 * DEFAULT_FRAME_SIZE);
    assert!(size <= 56 * 1024, "{size}");
}

// ---- fuzz ----

#[test]
fn random_datagrams_never_panic() {
    let mut rng = XorShift(0x5eed_f00d);
    let v = load("compat_frames.json");
    let seeds: Vec<Vec<u8>> = v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| unhex(c["frame_hex"].as_str().unwrap()))
        .chain([u_frame(0, b"seed"), checked(b'A', 0), checked(b'N', 1)])
        .collect();
    let mut ep = endpoint(Role::Connect);
    let mut buf = vec![0u8; Ep::MAX_DATAGRAM];
    let mut now = 0u64;
    for round in 0..20_000u32 {
        now += rng.below(50);
        let mut d = match rng.below(4) {
            0 => (0..rng.below(40)).map(|_| rng.next() as u8).collect(),
            1 => {
                let mut d = vec![b"UCANH"[rng.below(5) as usize]];
                d.extend((0..rng.below(60)).map(|_| rng.next() as u8));
                d
            }
            _ => seeds[rng.below(seeds.len() as u64) as usize].clone(),
        };
        // Mutate: flip bits, truncate, set the seq near `expected`.
        for _ in 0..rng.below(4) {
            if !d.is_empty() {
                let i = rng.below(d.len() as u64) as usize;
                d[i] ^= 1 << rng.below(8);
            }
        }
        if rng.below(8) == 0 && !d.is_empty() {
            d.truncate(rng.below(d.len() as u64) as usize);
        }
        if d.len() >= 3 && rng.below(2) == 0 {
            let seq = ep.expected_seq().wrapping_add(rng.below(3) as u16);
            d[1..3].copy_from_slice(&seq.to_be_bytes());
        }
        let _ = ep.handle_datagram(t(now), &d);
        if round % 7 == 0 {
            ep.send(&d);
        }
        if round % 5 == 0 {
            ep.handle_timeout(t(now));
        }
        let mut sink = [0u8; 3000];
        ep.recv(&mut sink);
        while ep.poll_transmit(t(now), &mut buf).is_some() {}
        while ep.poll_event().is_some() {}
        let _ = ep.poll_timeout();
    }
    assert!(ep.stats().bad.total() > 1000);
    assert!(ep.stats().datagrams_received == 20_000);
}

// ---- sessions ----

/// Moves datagrams both ways until neither side has anything to send.
fn pump(a: &mut Ep, b: &mut Ep, now: Instant) {
    for _ in 0..50 {
        let from_a = drain(a, now);
        let from_b = drain(b, now);
        if from_a.is_empty() && from_b.is_empty() {
            return;
        }
        for d in from_a {
            let _ = b.handle_datagram(now, &d);
        }
        for d in from_b {
            let _ = a.handle_datagram(now, &d);
        }
    }
    panic!("pump never settles");
}

#[test]
fn sessions_follow_each_other_on_one_frame_stream() {
    let mut a = endpoint(Role::Connect);
    let mut b = endpoint(Role::Listen);
    // Session 1: a sends "one" and ends; b answers "uno" and ends.
    assert_eq!(a.send(b"one"), 3);
    a.close_send();
    pump(&mut a, &mut b, t(1));
    assert_eq!(read_all(&mut b), b"one");
    assert!(b.peer_finished());
    // Session 2's bytes sent by a before b has moved on are held back.
    assert!(
        !a.next_session(),
        "a's side is still open: b has not finished"
    );
    assert_eq!(b.send(b"uno"), 3);
    b.close_send();
    pump(&mut a, &mut b, t(2));
    assert_eq!(read_all(&mut a), b"uno");
    assert!(a.peer_finished() && a.send_finished());
    assert!(a.next_session());
    assert_eq!(a.send(b"two"), 3);
    pump(&mut a, &mut b, t(3));
    assert_eq!(
        b.recv_available(),
        0,
        "b is still in session 1: nothing delivered"
    );
    assert_eq!(a.frames_in_flight(), 1, "unacked, so kept for later");
    // b moves on: the held frame is asked for again at once.
    assert!(b.next_session());
    pump(&mut a, &mut b, t(4));
    assert_eq!(read_all(&mut b), b"two");
    assert!(!b.peer_finished());
    assert_eq!(a.frames_in_flight(), 0);
    // Seqs went on across the sessions: 0 one, 1 end, 2 two.
    assert_eq!(a.next_send_seq(), 3);
    assert_eq!(b.expected_seq(), 3);
}

#[test]
fn reset_in_place_is_a_fresh_endpoint() {
    // Use one: data both ways, a frame in flight, an ack, silence.
    let mut used = endpoint(Role::Connect);
    used.send(b"hello");
    let sent = drain(&mut used, t(10));
    assert!(!sent.is_empty());
    used.handle_datagram(t(20), &u_frame(0, b"peer")).unwrap();
    used.send(b"more");
    used.close_send();
    used.handle_timeout(t(200_000));
    let _ = drain(&mut used, t(200_000));
    let _ = events(&mut used);

    used.reset(config(Role::Listen), t(300_000));
    let mut fresh = Ep::new(config(Role::Listen), t(300_000));
    for ep in [&mut used, &mut fresh] {
        assert_eq!(ep.next_send_seq(), 0);
        assert_eq!(ep.expected_seq(), 0);
        assert_eq!(ep.recv_available(), 0);
        assert!(!ep.peer_finished() && !ep.send_finished());
        assert!(!ep.is_failed() && !ep.is_peer_silent());
    }
    assert_eq!(used.stats(), fresh.stats());
    assert_eq!(used.config(), fresh.config());
    assert_eq!(used.poll_timeout(), fresh.poll_timeout());
    assert_eq!(used.send_capacity(), fresh.send_capacity());
    // Both run the same exchange the same way.
    for ep in [&mut used, &mut fresh] {
        ep.send(b"again");
    }
    assert_eq!(drain(&mut used, t(300_001)), drain(&mut fresh, t(300_001)));
    for ep in [&mut used, &mut fresh] {
        ep.handle_datagram(t(300_050), &u_frame(0, b"x")).unwrap();
    }
    assert_eq!(drain(&mut used, t(300_060)), drain(&mut fresh, t(300_060)));
    assert_eq!(read_all(&mut used), b"x");
    assert_eq!(read_all(&mut fresh), b"x");
    assert_eq!(events(&mut used), events(&mut fresh));
    assert_eq!(used.stats(), fresh.stats());
}
