//! `sntp_packet`: [`Reply::parse`], the [`Packet`] view and
//! [`Reply::sync`] on any datagram.
//!
//! Input: `rtt_us: u32 (big-endian) | datagram`. The datagram is parsed
//! twice, with the cookie it echoes and with another one. Invariants:
//! * nothing panics, whatever the bytes and the round trip;
//! * a reply is accepted exactly when every RFC 4330 check in the module
//!   docs holds, and refused with the first check that fails, in the
//!   documented order (length, mode, version, cookie, then the server's
//!   own claims);
//! * `sync`: the delay is at most the round trip, the clock is anchored at
//!   the receive instant and reads `T3 + delay / 2` there, the error bound
//!   is at least 1 ms;
//! * timestamps: `from_unix_micros(unix_micros(t))` reads back the same
//!   microseconds (except in the very last second of era 1, 2104, where
//!   rounding the fraction up leaves the range).

use punchwire_core::sntp::{
    LEAP_ALARM, MAX_STRATUM, MODE_SERVER, PACKET_LEN, Packet, Reply, SntpError,
};
use punchwire_core::time::{add_micros, at_micros, micros_between};

pub fn run(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let rtt_us = u64::from(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
    let datagram = &data[4..];
    let echoed = Packet::new_checked(datagram).ok().map(|p| p.originate().0);
    let cookies = [
        echoed.unwrap_or(0x0123_4567_89ab_cdef),
        0xfedc_ba98_7654_3210,
    ];
    for cookie in cookies {
        let r = Reply::parse(datagram, cookie);
        check_verdict(datagram, cookie, &r);
        if let Ok(reply) = r {
            check_sync(&reply, rtt_us);
        }
    }
    if let Ok(p) = Packet::new_checked(datagram) {
        // The last second of era 1 (2104-02-07) can round up past the
        // range the readings cover; below it the round trip is exact.
        for t in [p.originate(), p.receive(), p.transmit()] {
            if t.seconds() == 0x7fff_ffff {
                continue;
            }
            let us = t.unix_micros();
            let back = punchwire_core::sntp::Timestamp::from_unix_micros(us);
            assert_eq!(back.unix_micros(), us, "timestamp {t:?} does not read back");
        }
    }
}

fn check_verdict(d: &[u8], cookie: u64, r: &Result<Reply, SntpError>) {
    if d.len() < PACKET_LEN {
        assert_eq!(*r, Err(SntpError::TooShort));
        return;
    }
    let p = Packet::new_unchecked(d);
    let expected = if p.mode() != MODE_SERVER {
        Err(SntpError::Mode(p.mode()))
    } else if !matches!(p.version(), 3 | 4) {
        Err(SntpError::Version(p.version()))
    } else if p.originate().0 != cookie {
        Err(SntpError::Originate)
    } else if p.stratum() == 0 {
        Err(SntpError::KissOfDeath(p.reference_id()))
    } else if p.leap() == LEAP_ALARM {
        Err(SntpError::Unsynchronised)
    } else if p.stratum() > MAX_STRATUM {
        Err(SntpError::Stratum(p.stratum()))
    } else if p.transmit().0 == 0 {
        Err(SntpError::ZeroTransmit)
    } else {
        Ok(())
    };
    match (r, expected) {
        (Ok(reply), Ok(())) => {
            assert_eq!(reply.originate.0, cookie);
            assert_eq!(reply.transmit, p.transmit());
            assert_eq!(reply.receive, p.receive());
            assert_eq!(
                (reply.leap, reply.version, reply.stratum),
                (p.leap(), p.version(), p.stratum())
            );
            assert_eq!(
                (reply.root_delay, reply.root_dispersion),
                (p.root_delay(), p.root_dispersion())
            );
        }
        (Err(got), Err(want)) => assert_eq!(*got, want),
        (got, want) => panic!("parse gave {got:?}, the checks say {want:?}"),
    }
    // Only an answer to our cookie can carry the server's own refusals.
    if let Err(e) = r
        && e.is_from_server()
    {
        assert_eq!(p.originate().0, cookie);
    }
}

fn check_sync(reply: &Reply, rtt_us: u64) {
    let sent = at_micros(5_000_000);
    let received = add_micros(sent, rtt_us);
    let s = reply.sync(sent, received);
    let rtt = micros_between(sent, received);
    assert!(
        s.delay_us <= rtt,
        "delay {} above the round trip {rtt}",
        s.delay_us
    );
    if let Some(p) = reply.processing_us(rtt) {
        assert!(p <= rtt);
        assert_eq!(s.delay_us, rtt - p);
    } else {
        assert_eq!(s.delay_us, rtt);
    }
    assert_eq!(s.clock.instant(), received);
    let want = reply
        .transmit
        .unix_micros()
        .saturating_add((s.delay_us / 2) as i64);
    assert_eq!(s.clock.unix_micros_at(received), want);
    assert_eq!(s.stratum, reply.stratum);
    assert!(s.max_error_ms() >= 1);
    // The bound covers half the delay and the server's root distance.
    let bound_us = u128::from(s.delay_us / 2) + u128::from(s.root_distance_us);
    assert!(u128::from(s.max_error_ms() as u64) * 1000 >= bound_us);
}
