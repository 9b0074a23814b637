//! [`SntpClient`]: one exchange with one server, with resends.

use core::net::SocketAddrV4;

use super::{PACKET_LEN, Reply, Request, SntpError, SntpSync};
use crate::time::{Instant, add_millis, micros};

/// Time between requests while none is answered. RFC 4330 §10: a client
/// must not poll a server more often than every 15 seconds, and an
/// unanswered request is a poll.
pub const RESEND_INTERVAL_MS: u64 = 15_000;
/// Requests sent before giving up; the client fails with
/// [`SntpError::Timeout`] one interval after the last, a minute after the
/// first.
pub const MAX_TRIES: usize = 4;

/// A sans-IO SNTP client: asks one server for the time until it answers,
/// [`MAX_TRIES`] requests at most.
///
/// Methods by kind:
/// * input: [`handle_datagram`](Self::handle_datagram),
///   [`handle_timeout`](Self::handle_timeout);
/// * output: [`poll_transmit`](Self::poll_transmit),
///   [`poll_timeout`](Self::poll_timeout);
/// * getters: [`outcome`](Self::outcome), [`server`](Self::server),
///   [`tries`](Self::tries).
///
/// Call order: after `new` and after every input, call `poll_transmit` and
/// send what it writes to [`server`](Self::server) at once (its `now` is the
/// send instant); pass every datagram received to `handle_datagram` with
/// the instant it arrived; sleep until `poll_timeout` (or a datagram) and
/// call `handle_timeout(now)`; stop when `outcome` is `Some`. Early or
/// repeated calls are harmless, and no input makes any method panic.
#[derive(Clone, Debug)]
pub struct SntpClient {
    server: SocketAddrV4,
    cookie: u64,
    /// Send instant of each try so far.
    sent: [Instant; MAX_TRIES],
    tries: usize,
    /// A request is due at the next `poll_transmit`.
    due: bool,
    /// When the last request is given up (resend or fail).
    timer: Option<Instant>,
    outcome: Option<Result<SntpSync, SntpError>>,
}

impl SntpClient {
    /// A client for `server` (usually port [`PORT`](super::PORT)); the first
    /// request is due at once. `cookie` should be unpredictable — a random
    /// value, or one mixed with the monotonic time — since it is all that
    /// tells the server's answer from a forgery.
    pub fn new(server: SocketAddrV4, cookie: u64) -> Self {
        SntpClient {
            server,
            cookie,
            sent: [Instant::new(0); MAX_TRIES],
            tries: 0,
            due: true,
            timer: None,
            outcome: None,
        }
    }

    // ---- input ----

    /// Handles one datagram that arrived at `now` from `from`.
    ///
    /// `Ok(None)`: not for us (another address, or the client is done).
    /// `Ok(Some(sync))`: the answer; [`outcome`](Self::outcome) holds it
    /// too. `Err(e)`: a refused datagram; when
    /// [`e.is_from_server()`](SntpError::is_from_server) the server itself
    /// refused and the client has failed with `e`, otherwise it keeps
    /// waiting.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        datagram: &[u8],
    ) -> Result<Option<SntpSync>, SntpError> {
        if self.outcome.is_some() || from != self.server {
            return Ok(None);
        }
        let mut answered = None;
        let result = Reply::parse_matching(datagram, |originate| {
            answered = self.try_of(originate);
            answered.is_some()
        });
        match (result, answered) {
            (Ok(reply), Some(i)) => {
                let sync = reply.sync(self.sent[i], now);
                self.finish(Ok(sync));
                Ok(Some(sync))
            }
            (Err(e), _) => {
                if e.is_from_server() {
                    self.finish(Err(e));
                }
                Err(e)
            }
            // parse_matching only succeeds when the cookie matched.
            (Ok(_), None) => Err(SntpError::Originate),
        }
    }

    /// Resends, or gives up, once the current request's interval is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(timer) = self.timer else { return };
        if self.outcome.is_some() || micros(now) < micros(timer) {
            return;
        }
        self.timer = None;
        if self.tries < MAX_TRIES {
            self.due = true;
        } else {
            self.outcome = Some(Err(SntpError::Timeout));
        }
    }

    // ---- output ----

    /// Writes the next request into `buf` and returns its length, or `None`
    /// when none is due. `now` must be the instant it is sent.
    ///
    /// # Panics
    /// If `buf` is shorter than [`PACKET_LEN`].
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        assert!(
            buf.len() >= PACKET_LEN,
            "poll_transmit needs a buffer of PACKET_LEN bytes"
        );
        if !self.due || self.outcome.is_some() || self.tries >= MAX_TRIES {
            return None;
        }
        let out: &mut [u8; PACKET_LEN] = (&mut buf[..PACKET_LEN]).try_into().ok()?;
        Request {
            cookie: self.cookie_of(self.tries),
        }
        .emit(out);
        self.sent[self.tries] = now;
        self.tries += 1;
        self.due = false;
        self.timer = Some(add_millis(now, RESEND_INTERVAL_MS));
        Some(PACKET_LEN)
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work. A
    /// request already due is not a timer: drain `poll_transmit` first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.outcome.is_none().then_some(self.timer).flatten()
    }

    // ---- getters ----

    /// The result, once there is one.
    pub fn outcome(&self) -> Option<Result<SntpSync, SntpError>> {
        self.outcome
    }

    /// The server asked.
    pub fn server(&self) -> SocketAddrV4 {
        self.server
    }

    /// Requests sent so far.
    pub fn tries(&self) -> usize {
        self.tries
    }

    /// The transmit timestamp of try `i`.
    pub fn cookie_of(&self, i: usize) -> u64 {
        self.cookie.wrapping_add(i as u64)
    }

    // ---- internals ----

    /// Which try sent `originate`, among those sent.
    fn try_of(&self, originate: u64) -> Option<usize> {
        let i = originate.wrapping_sub(self.cookie);
        (i < self.tries as u64).then_some(i as usize)
    }

    fn finish(&mut self, outcome: Result<SntpSync, SntpError>) {
        self.outcome = Some(outcome);
        self.timer = None;
        self.due = false;
    }
}
