//! `sntp_client`: an [`SntpClient`] driven through arbitrary interleavings
//! of time, resends and replies (forged, stale, from other addresses, kiss
//! codes, well-formed answers to any try).
//!
//! Invariants: no panic, no heap allocation in any client call; at most [`MAX_TRIES`] requests, each a proper
//! client request carrying `cookie + try`, the next only when due; the
//! outcome never changes once set, and then nothing more is sent or timed;
//! a datagram from another address changes nothing; a refusal ends the
//! exchange exactly when it comes from the server; a result is anchored at
//! its arrival with a delay no longer than the round trip of the try it
//! answers; `Timeout` only after the last try's interval;
//! `poll_timeout` after `handle_timeout(now)` is later than `now`.

use crate::alloc_count::no_alloc;
use arbitrary::Arbitrary;
use core::net::{Ipv4Addr, SocketAddrV4};
use punchwire_core::sntp::{
    MAX_TRIES, MODE_CLIENT, PACKET_LEN, RESEND_INTERVAL_MS, SntpClient, SntpError, VERSION,
};
use punchwire_core::time::{Instant, add_micros, at_micros, micros, micros_between};

const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 123), 123);
const OTHER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 124), 123);

#[derive(Arbitrary, Debug)]
pub struct Input {
    cookie: u64,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Time passes (ms), then `handle_timeout`.
    Advance(u16),
    /// Jump to `poll_timeout` and handle it.
    ToTimer,
    /// A reply built from fields; `answer` picks the originate.
    Reply {
        flags: u8,
        stratum: u8,
        root_delay: u32,
        root_dispersion: u32,
        refid: [u8; 4],
        answer: Answer,
        receive: u64,
        transmit: u64,
        /// Bytes after the 48 (extensions), or a cut when `cut` is set.
        extra: Vec<u8>,
        cut: Option<u8>,
        from_other: bool,
    },
    /// Raw bytes.
    Raw { bytes: Vec<u8>, from_other: bool },
}

#[derive(Arbitrary, Debug)]
enum Answer {
    /// The cookie of try `n` (modulo the tries made, or the next one).
    Try(u8),
    Any(u64),
}

struct Model {
    client: SntpClient,
    now: Instant,
    sent: Vec<Instant>,
    cookie: u64,
    outcome: Option<Result<punchwire_core::sntp::SntpSync, SntpError>>,
}

impl Model {
    /// The driver's output step: send what is due.
    fn transmit(&mut self) {
        let mut buf = [0u8; PACKET_LEN];
        let now = self.now;
        while let Some(n) = no_alloc("poll_transmit", || self.client.poll_transmit(now, &mut buf)) {
            assert_eq!(n, PACKET_LEN);
            assert!(self.outcome.is_none(), "a request after the outcome");
            let i = self.sent.len();
            assert!(i < MAX_TRIES, "more than MAX_TRIES requests");
            assert_eq!(buf[0], (VERSION << 3) | MODE_CLIENT);
            assert!(buf[1..40].iter().all(|&b| b == 0));
            assert_eq!(
                buf[40..48],
                self.cookie.wrapping_add(i as u64).to_be_bytes()
            );
            if let Some(&last) = self.sent.last() {
                assert!(
                    micros_between(last, self.now) >= RESEND_INTERVAL_MS * 1000,
                    "a resend before its interval"
                );
            }
            self.sent.push(self.now);
            assert_eq!(self.client.tries(), self.sent.len());
        }
    }

    fn timeout(&mut self) {
        let now = self.now;
        no_alloc("handle_timeout", || self.client.handle_timeout(now));
        if let Some(t) = self.client.poll_timeout() {
            assert!(
                micros(t) > micros(self.now),
                "timer in the past after handle_timeout"
            );
        }
        self.after();
    }

    fn datagram(&mut self, bytes: &[u8], from_other: bool) {
        let from = if from_other { OTHER } else { SERVER };
        let before = self.client.outcome();
        let now = self.now;
        let r = no_alloc("handle_datagram", || {
            self.client.handle_datagram(now, from, bytes)
        });
        if from_other || before.is_some() {
            assert_eq!(r, Ok(None), "a datagram that is not for us was handled");
            assert_eq!(self.client.outcome(), before);
            return;
        }
        match r {
            Ok(Some(sync)) => {
                assert_eq!(self.client.outcome(), Some(Ok(sync)));
                let originate = u64::from_be_bytes(bytes[24..32].try_into().unwrap());
                let i = originate.wrapping_sub(self.cookie) as usize;
                assert!(i < self.sent.len(), "answer to a try never sent");
                let rtt = micros_between(self.sent[i], self.now);
                assert!(sync.delay_us <= rtt);
                assert_eq!(sync.clock.instant(), self.now);
                assert!((1..=15).contains(&sync.stratum));
            }
            Ok(None) => panic!("Ok(None) for a datagram from the server before the outcome"),
            Err(e) => {
                assert_ne!(e, SntpError::Timeout);
                if e.is_from_server() {
                    assert_eq!(self.client.outcome(), Some(Err(e)));
                } else {
                    assert_eq!(self.client.outcome(), None);
                }
            }
        }
        self.after();
    }

    fn after(&mut self) {
        let o = self.client.outcome();
        if let Some(prev) = self.outcome {
            assert_eq!(o, Some(prev), "the outcome changed");
        }
        if let Some(Err(SntpError::Timeout)) = o
            && self.outcome.is_none()
        {
            assert_eq!(self.sent.len(), MAX_TRIES, "timeout before the last try");
            let last = *self.sent.last().unwrap();
            assert!(micros_between(last, self.now) >= RESEND_INTERVAL_MS * 1000);
        }
        if o.is_some() {
            assert_eq!(self.client.poll_timeout(), None);
        }
        self.outcome = o;
        self.transmit();
    }
}

pub fn run(input: Input) {
    let start = at_micros(1_000_000);
    let mut m = Model {
        client: SntpClient::new(SERVER, input.cookie),
        now: start,
        sent: Vec::new(),
        cookie: input.cookie,
        outcome: None,
    };
    m.transmit();
    assert_eq!(m.sent.len(), 1, "the first request is due at once");
    for op in input.ops.into_iter().take(256) {
        match op {
            Op::Advance(ms) => {
                m.now = add_micros(m.now, u64::from(ms) * 1000);
                m.timeout();
            }
            Op::ToTimer => {
                if let Some(t) = m.client.poll_timeout() {
                    m.now = t;
                }
                m.timeout();
            }
            Op::Reply {
                flags,
                stratum,
                root_delay,
                root_dispersion,
                refid,
                answer,
                receive,
                transmit,
                extra,
                cut,
                from_other,
            } => {
                let originate = match answer {
                    Answer::Try(n) => {
                        let i = u64::from(n) % (m.sent.len() as u64 + 1);
                        m.cookie.wrapping_add(i)
                    }
                    Answer::Any(v) => v,
                };
                let mut b = vec![0u8; PACKET_LEN];
                b[0] = flags;
                b[1] = stratum;
                b[4..8].copy_from_slice(&root_delay.to_be_bytes());
                b[8..12].copy_from_slice(&root_dispersion.to_be_bytes());
                b[12..16].copy_from_slice(&refid);
                b[24..32].copy_from_slice(&originate.to_be_bytes());
                b[32..40].copy_from_slice(&receive.to_be_bytes());
                b[40..48].copy_from_slice(&transmit.to_be_bytes());
                match cut {
                    Some(c) => b.truncate(usize::from(c) % PACKET_LEN),
                    None => b.extend_from_slice(&extra),
                }
                m.datagram(&b, from_other);
            }
            Op::Raw { bytes, from_other } => m.datagram(&bytes, from_other),
        }
    }
}
