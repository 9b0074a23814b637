extern crate std;

use super::*;
use crate::schedule::UnixTime;
use crate::time::{at_micros, at_millis};
use crate::vectors::XorShift;
use core::net::{Ipv4Addr, SocketAddrV4};
use std::string::ToString;
use std::vec::Vec;

/// 2026-11-22T00:00:00Z (`calendar.timegm((2026, 11, 22, 0, 0, 0))`).
const NOV_2026: i64 = 1_795_305_600;
/// 2040-01-01T00:00:00Z, in NTP era 1.
const JAN_2040: i64 = 2_208_988_800;
const COOKIE: u64 = 0x0123_4567_89ab_cdef;
const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), PORT);

fn ms(unix_ms: i64) -> Timestamp {
    Timestamp::from_unix_micros(unix_ms * 1000)
}

/// A server reply built byte by byte: LI 0, version 4, mode 4, stratum 2,
/// reference id `GPS\0`, and the three timestamps.
fn reply(originate: u64, receive: Timestamp, transmit: Timestamp) -> [u8; PACKET_LEN] {
    let mut b = [0u8; PACKET_LEN];
    b[0] = 0b00_100_100;
    b[1] = 2;
    b[2] = 6;
    b[3] = 0xe9;
    b[12..16].copy_from_slice(b"GPS\0");
    b[16..24].copy_from_slice(&receive.0.to_be_bytes());
    b[24..32].copy_from_slice(&originate.to_be_bytes());
    b[32..40].copy_from_slice(&receive.0.to_be_bytes());
    b[40..48].copy_from_slice(&transmit.0.to_be_bytes());
    b
}

fn good() -> [u8; PACKET_LEN] {
    reply(COOKIE, ms(NOV_2026 * 1000), ms(NOV_2026 * 1000 + 7))
}

// ---- wire ----

#[test]
fn request_bytes_are_exact() {
    let mut buf = [0xffu8; PACKET_LEN];
    Request { cookie: COOKIE }.emit(&mut buf);
    let mut expected = [0u8; PACKET_LEN];
    expected[0] = 0x23; // LI 0, VN 4, mode 3
    expected[40..].copy_from_slice(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    assert_eq!(buf, expected);
    let p = Packet::new_checked(&buf[..]).unwrap();
    assert_eq!((p.leap(), p.version(), p.mode()), (0, 4, 3));
    assert_eq!(p.transmit(), Timestamp(COOKIE));
}

#[test]
fn timestamps_in_era_0() {
    // 2026-11-22: 1795305600 + 2208988800 = 4004294400 s since 1900.
    let t = Timestamp((4_004_294_400u64 << 32) | 0x8000_0000);
    assert_eq!(t.seconds(), 4_004_294_400);
    assert_eq!(t.unix_micros(), NOV_2026 * 1_000_000 + 500_000);
    assert_eq!(
        Timestamp::from_unix_micros(NOV_2026 * 1_000_000 + 500_000),
        t
    );
    // The unix epoch, and the earliest time era 0 covers (1968-01-20).
    assert_eq!(Timestamp((2_208_988_800u64) << 32).unix_micros(), 0);
    assert_eq!(Timestamp(1u64 << 63).unix_micros(), -61_505_152_000_000);
    // One fraction unit short of a second rounds to the next second.
    assert_eq!(
        Timestamp(u64::from(u32::MAX) | (1 << 63)).unix_micros(),
        -61_505_151_000_000
    );
}

#[test]
fn timestamps_in_era_1() {
    // Seconds with the top bit clear are after 2036-02-07T06:28:16Z.
    assert_eq!(Timestamp(0).unix_micros(), 2_085_978_496_000_000);
    let t = Timestamp(123_010_304u64 << 32); // (2208988800 + 2208988800) mod 2^32
    assert_eq!(t.unix_micros(), JAN_2040 * 1_000_000);
    assert_eq!(Timestamp::from_unix_micros(JAN_2040 * 1_000_000), t);
    // The last second era 1 covers: 2104-02-26T09:42:23Z.
    assert_eq!(
        Timestamp(0x7fff_ffffu64 << 32).unix_micros(),
        4_233_462_143_000_000
    );
    // Across the rollover the last era-0 second and the first era-1 second
    // are one second apart.
    let last = Timestamp(0xffff_ffffu64 << 32).unix_micros();
    assert_eq!(Timestamp(0).unix_micros() - last, 1_000_000);
}

#[test]
fn timestamps_round_trip_through_microseconds() {
    let mut rng = XorShift(0x5eed);
    let (lo, hi) = (-61_505_152_000_000i64, 4_233_462_144_000_000i64);
    for _ in 0..10_000 {
        let us = lo + rng.below((hi - lo) as u64) as i64;
        assert_eq!(Timestamp::from_unix_micros(us).unix_micros(), us, "{us}");
    }
}

#[test]
fn a_good_reply_parses() {
    let mut b = good();
    b[4..8].copy_from_slice(&0x0000_0148u32.to_be_bytes());
    b[8..12].copy_from_slice(&0x0000_0290u32.to_be_bytes());
    let r = Reply::parse(&b, COOKIE).unwrap();
    assert_eq!((r.leap, r.version, r.stratum), (0, 4, 2));
    assert_eq!((r.root_delay, r.root_dispersion), (0x148, 0x290));
    assert_eq!(r.originate, Timestamp(COOKIE));
    assert_eq!(r.receive, ms(NOV_2026 * 1000));
    assert_eq!(r.transmit, ms(NOV_2026 * 1000 + 7));
    // Version 3, a leap second warning, and extension bytes are fine.
    b[0] = 0b01_011_100;
    let mut long = Vec::from(b);
    long.extend_from_slice(&[0xaa; 20]);
    let r = Reply::parse(&long, COOKIE).unwrap();
    assert_eq!((r.leap, r.version), (1, 3));
}

#[test]
fn every_validation_error() {
    let g = good();
    let with = |i: usize, v: u8| {
        let mut b = good();
        b[i] = v;
        b
    };
    let parse = |b: &[u8]| Reply::parse(b, COOKIE);
    assert_eq!(parse(&[]), Err(SntpError::TooShort));
    assert_eq!(parse(&g[..47]), Err(SntpError::TooShort));
    assert_eq!(parse(&with(0, 0b00_100_011)), Err(SntpError::Mode(3)));
    assert_eq!(parse(&with(0, 0b00_100_101)), Err(SntpError::Mode(5)));
    assert_eq!(parse(&with(0, 0b00_010_100)), Err(SntpError::Version(2)));
    assert_eq!(parse(&with(0, 0b00_101_100)), Err(SntpError::Version(5)));
    assert_eq!(Reply::parse(&g, COOKIE + 1), Err(SntpError::Originate));
    let mut kod = with(1, 0);
    kod[0] = 0b11_100_100;
    kod[12..16].copy_from_slice(b"RATE");
    assert_eq!(parse(&kod), Err(SntpError::KissOfDeath(*b"RATE")));
    kod[12..16].copy_from_slice(b"DENY");
    assert_eq!(parse(&kod), Err(SntpError::KissOfDeath(*b"DENY")));
    assert_eq!(
        parse(&with(0, 0b11_100_100)),
        Err(SntpError::Unsynchronised)
    );
    assert_eq!(parse(&with(1, 16)), Err(SntpError::Stratum(16)));
    assert_eq!(parse(&with(1, 255)), Err(SntpError::Stratum(255)));
    let zero = reply(COOKIE, ms(NOV_2026 * 1000), Timestamp(0));
    assert_eq!(parse(&zero), Err(SntpError::ZeroTransmit));
    // An off-path kiss-o'-death (wrong cookie) is only a stray datagram.
    assert_eq!(Reply::parse(&kod, !COOKIE), Err(SntpError::Originate));
}

#[test]
fn errors_display() {
    let cases = [
        (SntpError::TooShort, "shorter than 48"),
        (SntpError::Mode(3), "mode 3"),
        (SntpError::Version(2), "version 2"),
        (SntpError::Originate, "forged or stale"),
        (SntpError::KissOfDeath(*b"RATE"), "\"RATE\""),
        (
            SntpError::KissOfDeath([b'X', 0, 0xff, b' ']),
            "\"X\\x00\\xff \"",
        ),
        (SntpError::Unsynchronised, "not synchronised"),
        (SntpError::Stratum(16), "stratum 16"),
        (SntpError::ZeroTransmit, "zero transmit"),
        (SntpError::Timeout, "no SNTP reply to 4 requests"),
    ];
    for (e, text) in cases {
        let shown = e.to_string();
        assert!(shown.contains(text), "{shown:?} lacks {text:?}");
    }
}

// ---- the unix time at the receive instant ----

#[test]
fn sync_with_asymmetric_paths_and_processing() {
    // Out 30 ms, server busy 7 ms, back 10 ms: the reply arrives when the
    // server's clock says S + 17 ms.
    let s = NOV_2026 * 1000;
    let t1 = at_millis(1_000);
    let t4 = at_millis(1_047);
    let r = Reply::parse(&reply(COOKIE, ms(s), ms(s + 7)), COOKIE).unwrap();
    let sync = r.sync(t1, t4);
    assert_eq!(sync.delay_us, 40_000);
    assert_eq!(sync.clock.instant(), t4);
    // T3 + delay/2 = S + 27 ms: 10 ms off the truth, within ± delay/2.
    assert_eq!(sync.clock.unix_at(t4), UnixTime::from_millis(s + 27));
    assert_eq!(
        sync.clock.unix_at(at_millis(61_047)),
        UnixTime::from_millis(s + 60_027)
    );
    assert_eq!(sync.max_error_ms(), 21);
    assert_eq!(sync.stratum, 2);
    // The classic NTP offset against a local clock 5 s slow:
    // θ = ((T2 − T1) + (T3 − T4)) / 2 = (5030 + 4990) / 2 ms.
    let local = UnixClock::new(t1, UnixTime::from_millis(s - 30 - 5_000));
    assert_eq!(sync.clock.offset_millis(&local), 5_010);
    // With symmetric paths (30 ms each way) the estimate is exact.
    let sync = r.sync(t1, at_millis(1_067));
    assert_eq!(sync.clock.unix_at(at_millis(1_067)).as_millis(), s + 7 + 30);
}

#[test]
fn sync_keeps_sub_millisecond_timestamps() {
    let s_us = NOV_2026 * 1_000_000;
    let r = Reply::parse(
        &reply(
            COOKIE,
            Timestamp::from_unix_micros(s_us + 100),
            Timestamp::from_unix_micros(s_us + 400),
        ),
        COOKIE,
    )
    .unwrap();
    // rtt 1300 µs, processing 300 µs, delay 1000 µs: S + 0.9 ms.
    let sync = r.sync(at_micros(0), at_micros(1_300));
    assert_eq!(sync.delay_us, 1_000);
    assert_eq!(sync.clock.unix_micros_at(at_micros(1_300)), s_us + 900);
    assert_eq!(
        sync.clock.unix_at(at_micros(1_300)).as_millis(),
        NOV_2026 * 1000 + 1
    );
    assert_eq!(sync.max_error_ms(), 1);
}

#[test]
fn sync_after_the_2036_rollover() {
    let s = JAN_2040 * 1000;
    let r = Reply::parse(&reply(COOKIE, ms(s), ms(s + 2)), COOKIE).unwrap();
    let sync = r.sync(at_millis(0), at_millis(12));
    assert_eq!(sync.clock.unix_at(at_millis(12)).as_millis(), s + 2 + 5);
    // T2 before the rollover, T3 after it: processing is still 2 ms.
    let before = (2_085_978_496 - 1) * 1000 + 999;
    let r = Reply::parse(&reply(COOKIE, ms(before), ms(before + 2)), COOKIE).unwrap();
    assert!(r.receive.seconds() > r.transmit.seconds());
    assert_eq!(r.processing_us(10_000), Some(2_000));
    let sync = r.sync(at_millis(0), at_millis(12));
    assert_eq!(sync.delay_us, 10_000);
    assert_eq!(
        sync.clock.unix_at(at_millis(12)).as_millis(),
        before + 2 + 5
    );
}

#[test]
fn unbelievable_processing_times_count_as_delay() {
    let s = NOV_2026 * 1000;
    let (t1, t4) = (at_millis(0), at_millis(40));
    for (t2, t3) in [
        (ms(s + 5), ms(s)),    // transmitted before received
        (ms(s - 50), ms(s)),   // busier than our whole round trip
        (Timestamp(0), ms(s)), // no receive timestamp
    ] {
        let r = Reply::parse(&reply(COOKIE, t2, t3), COOKIE).unwrap();
        let sync = r.sync(t1, t4);
        assert_eq!(sync.delay_us, 40_000);
        assert_eq!(sync.clock.unix_at(t4).as_millis(), s + 20);
        assert_eq!(sync.max_error_ms(), 21);
    }
    // A reply "before" the request: no round trip at all.
    let r = Reply::parse(&good(), COOKIE).unwrap();
    assert_eq!(r.sync(t4, t1).delay_us, 0);
}

#[test]
fn root_distance_widens_the_error_bound() {
    let mut b = good();
    b[4..8].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // 1 s
    b[8..12].copy_from_slice(&0x0000_8000u32.to_be_bytes()); // 0.5 s
    let sync = Reply::parse(&b, COOKIE)
        .unwrap()
        .sync(at_millis(0), at_millis(47));
    assert_eq!(sync.root_distance_us, 1_000_000);
    assert_eq!(sync.max_error_ms(), 20 + 1_000 + 1);
    // The largest values a server can claim neither overflow nor panic.
    b[4..12].fill(0xff);
    let sync = Reply::parse(&b, COOKIE)
        .unwrap()
        .sync(at_micros(0), at_micros(u64::MAX));
    assert!(sync.max_error_ms() > 0);
}

// ---- the client machine ----

fn client() -> SntpClient {
    SntpClient::new(SERVER, COOKIE)
}

fn transmit(c: &mut SntpClient, now: crate::time::Instant) -> Option<[u8; PACKET_LEN]> {
    let mut buf = [0u8; 64];
    let n = c.poll_transmit(now, &mut buf)?;
    assert_eq!(n, PACKET_LEN);
    Some(buf[..PACKET_LEN].try_into().unwrap())
}

fn cookie_sent(req: &[u8; PACKET_LEN]) -> u64 {
    Packet::new_checked(&req[..]).unwrap().transmit().0
}

#[test]
fn client_sends_at_once_then_resends_then_gives_up() {
    let mut c = client();
    assert_eq!(c.poll_timeout(), None);
    let req = transmit(&mut c, at_millis(100)).unwrap();
    assert_eq!(cookie_sent(&req), COOKIE);
    assert_eq!(transmit(&mut c, at_millis(100)), None);
    assert_eq!(c.poll_timeout(), Some(at_millis(100 + RESEND_INTERVAL_MS)));
    c.handle_timeout(at_millis(100 + RESEND_INTERVAL_MS - 1));
    assert_eq!(transmit(&mut c, at_millis(14_000)), None);
    for i in 1..MAX_TRIES {
        let now = at_millis(100 + i as u64 * RESEND_INTERVAL_MS);
        c.handle_timeout(now);
        c.handle_timeout(now);
        let req = transmit(&mut c, now).unwrap();
        assert_eq!(cookie_sent(&req), COOKIE + i as u64);
        assert_eq!(c.tries(), i + 1);
    }
    let end = at_millis(100 + MAX_TRIES as u64 * RESEND_INTERVAL_MS);
    assert_eq!(c.poll_timeout(), Some(end));
    assert_eq!(c.outcome(), None);
    c.handle_timeout(end);
    assert_eq!(c.outcome(), Some(Err(SntpError::Timeout)));
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(transmit(&mut c, end), None);
    assert_eq!(c.tries(), MAX_TRIES);
}

#[test]
fn client_measures_from_the_try_that_was_answered() {
    let s = NOV_2026 * 1000;
    let mut c = client();
    transmit(&mut c, at_millis(0)).unwrap();
    c.handle_timeout(at_millis(15_000));
    transmit(&mut c, at_millis(15_000)).unwrap();
    // A late answer to the first try: 15.04 s round trip.
    let late = reply(COOKIE, ms(s), ms(s + 7));
    let sync = c
        .handle_datagram(at_millis(15_047), SERVER, &late)
        .unwrap()
        .unwrap();
    assert_eq!(sync.delay_us, 15_040_000);
    assert_eq!(c.outcome(), Some(Ok(sync)));

    // The same answer to the second try: 47 ms.
    let mut c = client();
    transmit(&mut c, at_millis(0)).unwrap();
    c.handle_timeout(at_millis(15_000));
    transmit(&mut c, at_millis(15_000)).unwrap();
    let answer = reply(COOKIE + 1, ms(s), ms(s + 7));
    let sync = c
        .handle_datagram(at_millis(15_047), SERVER, &answer)
        .unwrap()
        .unwrap();
    assert_eq!(sync.delay_us, 40_000);
    assert_eq!(sync.clock.unix_at(at_millis(15_047)).as_millis(), s + 27);
}

#[test]
fn client_ignores_strangers_and_survives_forgeries() {
    let s = NOV_2026 * 1000;
    let mut c = client();
    transmit(&mut c, at_millis(0)).unwrap();
    let genuine = reply(COOKIE, ms(s), ms(s + 7));
    let other_port = SocketAddrV4::new(*SERVER.ip(), 1123);
    let other_host = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), PORT);
    assert_eq!(
        c.handle_datagram(at_millis(5), other_port, &genuine),
        Ok(None)
    );
    assert_eq!(
        c.handle_datagram(at_millis(5), other_host, &genuine),
        Ok(None)
    );
    // Forged cookie, an unsent try's cookie, garbage: refused, not fatal.
    let forged = reply(COOKIE ^ 1 << 40, ms(s), ms(s + 7));
    let unsent = reply(COOKIE + 1, ms(s), ms(s + 7));
    let mut kod = reply(!COOKIE, ms(s), ms(s));
    kod[1] = 0;
    kod[12..16].copy_from_slice(b"DENY");
    for (bytes, e) in [
        (&forged[..], SntpError::Originate),
        (&unsent[..], SntpError::Originate),
        (&kod[..], SntpError::Originate),
        (&[0x24u8; 12][..], SntpError::TooShort),
    ] {
        assert_eq!(c.handle_datagram(at_millis(6), SERVER, bytes), Err(e));
        assert!(!e.is_from_server());
        assert_eq!(c.outcome(), None);
    }
    let sync = c
        .handle_datagram(at_millis(47), SERVER, &genuine)
        .unwrap()
        .unwrap();
    assert_eq!(sync.clock.unix_at(at_millis(47)).as_millis(), s + 27);
    // Done: a duplicate is not for us any more, and nothing is due.
    assert_eq!(c.handle_datagram(at_millis(48), SERVER, &genuine), Ok(None));
    assert_eq!(c.poll_timeout(), None);
    c.handle_timeout(at_millis(60_000));
    assert_eq!(transmit(&mut c, at_millis(60_000)), None);
    assert_eq!(c.outcome(), Some(Ok(sync)));
}

#[test]
fn client_stops_on_what_the_server_says() {
    let s = NOV_2026 * 1000;
    let mut kod = reply(COOKIE, ms(s), ms(s));
    kod[0] = 0b11_100_100;
    kod[1] = 0;
    kod[12..16].copy_from_slice(b"RATE");
    let mut unsync = reply(COOKIE, ms(s), ms(s));
    unsync[0] = 0b11_100_100;
    let mut stratum = reply(COOKIE, ms(s), ms(s));
    stratum[1] = 16;
    let zero = reply(COOKIE, ms(s), Timestamp(0));
    for (bytes, e) in [
        (kod, SntpError::KissOfDeath(*b"RATE")),
        (unsync, SntpError::Unsynchronised),
        (stratum, SntpError::Stratum(16)),
        (zero, SntpError::ZeroTransmit),
    ] {
        let mut c = client();
        transmit(&mut c, at_millis(0)).unwrap();
        assert_eq!(c.handle_datagram(at_millis(30), SERVER, &bytes), Err(e));
        assert!(e.is_from_server());
        assert_eq!(c.outcome(), Some(Err(e)));
        assert_eq!(c.poll_timeout(), None);
        c.handle_timeout(at_millis(15_000));
        assert_eq!(transmit(&mut c, at_millis(15_000)), None);
    }
}

#[test]
fn client_refuses_replies_before_any_request() {
    let mut c = client();
    let r = reply(COOKIE, ms(0), ms(1));
    assert_eq!(
        c.handle_datagram(at_millis(0), SERVER, &r),
        Err(SntpError::Originate)
    );
    assert_eq!(c.outcome(), None);
}

#[test]
#[should_panic(expected = "PACKET_LEN")]
fn client_wants_a_whole_packet_buffer() {
    client().poll_transmit(at_millis(0), &mut [0u8; PACKET_LEN - 1]);
}

// ---- nothing panics ----

#[test]
fn random_and_truncated_input_never_panics() {
    let mut rng = XorShift(0xdead_beef);
    let g = good();
    for len in 0..=g.len() {
        let r = Reply::parse(&g[..len], COOKIE);
        assert_eq!(r.is_ok(), len == PACKET_LEN);
    }
    let mut buf = [0u8; 100];
    for _ in 0..50_000 {
        let len = rng.below(buf.len() as u64 + 1) as usize;
        if rng.below(2) == 0 {
            buf.iter_mut().for_each(|b| *b = rng.next() as u8);
        } else {
            // A valid reply with a few bytes flipped: reaches the deeper checks.
            buf[..PACKET_LEN].copy_from_slice(&g);
            for _ in 0..1 + rng.below(4) {
                buf[rng.below(PACKET_LEN as u64) as usize] ^= rng.next() as u8;
            }
        }
        let bytes = &buf[..len];
        if let Ok(r) = Reply::parse(bytes, COOKIE) {
            let t1 = at_micros(rng.next());
            let t4 = at_micros(rng.next());
            let sync = r.sync(t1, t4);
            let _ = sync.max_error_ms();
            let _ = sync.clock.unix_at(at_micros(rng.next()));
        }
        let mut c = client();
        let _ = transmit(&mut c, at_micros(rng.next() >> 1));
        let _ = c.handle_datagram(at_micros(rng.next()), SERVER, bytes);
        let _ = c.handle_datagram(at_micros(rng.next()), SERVER, &g[..]);
    }
}

#[test]
fn random_call_sequences_never_panic() {
    let mut rng = XorShift(42);
    for _ in 0..2_000 {
        let mut c = SntpClient::new(SERVER, rng.next());
        let mut now = 0u64;
        let mut buf = [0u8; PACKET_LEN];
        for _ in 0..40 {
            now = now.saturating_add(rng.below(20_000_000));
            let t = at_micros(now);
            match rng.below(4) {
                0 => {
                    let _ = c.poll_transmit(t, &mut buf);
                }
                1 => c.handle_timeout(t),
                2 => {
                    let mut r = reply(c.cookie_of(rng.below(6) as usize), ms(0), ms(1));
                    r[rng.below(PACKET_LEN as u64) as usize] ^= rng.next() as u8;
                    let _ = c.handle_datagram(t, SERVER, &r);
                }
                _ => {
                    if let Some(p) = c.poll_timeout() {
                        now = crate::time::micros(p);
                        c.handle_timeout(p);
                    }
                }
            }
            assert!(c.tries() <= MAX_TRIES);
            if c.outcome().is_some() {
                assert_eq!(c.poll_timeout(), None);
            }
        }
    }
}
