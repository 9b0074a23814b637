//! Live status of running instances, for `punchwire status`.
//!
//! Every `punchwire tcp` / `punchwire udp` process publishes one state file
//! in a run directory ([`dir`]: `$PUNCHWIRE_RUN_DIR`, else
//! `/var/run/punchwire`, which is tmpfs on OpenWrt):
//!
//! * `PID.state` — `key=value` lines ([`Snapshot::render`]), replaced
//!   atomically (written to `.PID.state.tmp`, then renamed), so a reader
//!   never sees half a file;
//! * `PID.lock` — held with an exclusive `flock` for the life of the
//!   process. The kernel drops the lock however the process ends, so a
//!   reader that *can* take the lock knows the instance is gone (shown as
//!   `gone`), even after SIGKILL and even if the pid was reused.
//!
//! Statistics are written at most once a second ([`MIN_INTERVAL`]); a
//! change of state is written at once. The files are removed when the
//! [`Publisher`] is dropped and, for SIGTERM and SIGINT, by a signal handler
//! (`unlink` only, then the signal's default action, so the exit status
//! still says which signal), so a stopped instance leaves nothing behind.
//! A signal that was ignored when the process started (SIGINT of a
//! background job) stays ignored. Publishing never fails the tunnel: if the
//! directory cannot be used the publisher logs one warning and does
//! nothing.
//!
//! The feeding API is small on purpose: [`Publisher::new`] with an
//! [`Info`], [`Publisher::set_state`], [`Publisher::update_stats`] (rate
//! limited), [`Publisher::session_started`] / [`Publisher::session_ended`].

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The run directory when `$PUNCHWIRE_RUN_DIR` is not set.
pub const DEFAULT_DIR: &str = "/var/run/punchwire";
/// The environment variable naming another run directory.
pub const DIR_ENV: &str = "PUNCHWIRE_RUN_DIR";
/// Statistics are written at most this often.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// First line of a state file (format version).
const MAGIC: &str = "punchwire-status 1";

/// The run directory: `$PUNCHWIRE_RUN_DIR`, else [`DEFAULT_DIR`].
pub fn dir() -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEFAULT_DIR),
    }
}

/// Whether `name` is usable as an instance name (`--name`): 1 to 64 of
/// `A-Z a-z 0-9 _ . : @ -` (UCI section names are a subset).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b))
}

/// `punchwire tcp` or `punchwire udp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// TCP hole punching.
    Tcp,
    /// The UDP tunnel.
    Udp,
}

impl Mode {
    /// The word in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Tcp => "tcp",
            Mode::Udp => "udp",
        }
    }
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "tcp" => Some(Mode::Tcp),
            "udp" => Some(Mode::Udp),
            _ => None,
        }
    }
}

/// What an instance is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No usable network or clock yet (no address, no time).
    WaitingForNetwork,
    /// Sending the punch (TCP) or heartbeats the peer has not answered (UDP).
    Punching,
    /// The hole is open: a TCP connection, or datagrams from the peer.
    Connected,
    /// Connected before, but nothing heard from the peer for a while.
    PeerSilent,
}

impl State {
    /// The word in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            State::WaitingForNetwork => "waiting-for-network",
            State::Punching => "punching",
            State::Connected => "connected",
            State::PeerSilent => "peer-silent",
        }
    }
    fn parse(s: &str) -> Option<State> {
        [
            State::WaitingForNetwork,
            State::Punching,
            State::Connected,
            State::PeerSilent,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// The tunnel's wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// udphp.py v0.12's frames.
    V012,
    /// punchwire's own protocol.
    Pw1,
}

impl Protocol {
    /// The word in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V012 => "v012",
            Protocol::Pw1 => "pw1",
        }
    }
    fn parse(s: &str) -> Option<Protocol> {
        match s {
            "v012" => Some(Protocol::V012),
            "pw1" => Some(Protocol::Pw1),
            _ => None,
        }
    }
}

/// What does not change while an instance runs (the protocol may be
/// settled later: [`Publisher::set_protocol`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// `--name`, or the UCI section (the init script passes it).
    pub name: String,
    /// tcp or udp.
    pub mode: Mode,
    /// tcp: `netcat`, `forward`, `listen`; udp: `connect`, `listen`.
    pub role: String,
    /// The peer (`IP` or `IP:PORT`).
    pub peer: String,
    /// Wire protocol, if the mode has one.
    pub protocol: Option<Protocol>,
}

/// Counters fed to [`Publisher::update_stats`] (totals since start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Smoothed round-trip time, µs.
    pub rtt_us: Option<u64>,
    /// Payload bytes sent to the peer.
    pub bytes_sent: u64,
    /// Payload bytes received from the peer.
    pub bytes_received: u64,
    /// Retransmissions.
    pub retransmits: u64,
    /// Datagrams (or segments) received from the peer: when it stops
    /// growing for the silence threshold, the state becomes
    /// [`State::PeerSilent`].
    pub heard: u64,
}

/// One state file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Process id.
    pub pid: u32,
    /// Name, mode, role, peer, protocol.
    pub info: Info,
    /// Current state.
    pub state: State,
    /// Unix time (s) of the last change of state.
    pub since: i64,
    /// Unix time (s) of this snapshot.
    pub updated: i64,
    /// Smoothed RTT, µs.
    pub rtt_us: Option<u64>,
    /// Payload bytes sent.
    pub tx_bytes: u64,
    /// Payload bytes received.
    pub rx_bytes: u64,
    /// Goodput sent, bytes/s, over the last interval.
    pub tx_rate: u64,
    /// Goodput received, bytes/s, over the last interval.
    pub rx_rate: u64,
    /// Retransmissions.
    pub retransmits: u64,
    /// Open sessions (udp) or relayed connections (tcp).
    pub sessions: u32,
}

impl Snapshot {
    /// The file format: a version line, then `key=value` lines.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(320);
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let _ = write!(
            s,
            "{MAGIC}\npid={}\nname={}\nmode={}\nrole={}\npeer={}\nstate={}\nprotocol={}\n\
             since={}\nupdated={}\nrtt_us={}\ntx_bytes={}\nrx_bytes={}\ntx_rate={}\n\
             rx_rate={}\nretransmits={}\nsessions={}\n",
            self.pid,
            self.info.name,
            self.info.mode.as_str(),
            self.info.role,
            self.info.peer,
            self.state.as_str(),
            self.info.protocol.map_or("-", Protocol::as_str),
            self.since,
            self.updated,
            opt(self.rtt_us),
            self.tx_bytes,
            self.rx_bytes,
            self.tx_rate,
            self.rx_rate,
            self.retransmits,
            self.sessions
        );
        s
    }

    /// Parses [`Snapshot::render`]'s format; `None` for anything else
    /// (another version, a missing or malformed field). Unknown keys are
    /// ignored, so later versions may add some.
    pub fn parse(text: &str) -> Option<Snapshot> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        // A few lines: a list is smaller than a map (and has no hasher).
        let mut kv: Vec<(&str, &str)> = Vec::with_capacity(20);
        for line in lines {
            kv.push(line.split_once('=')?);
        }
        // The last one wins, as a map would.
        let get = |k: &str| kv.iter().rev().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let num = |k: &str| get(k)?.parse::<u64>().ok();
        let text_field = |k: &str| {
            let v = get(k)?;
            (!v.is_empty() && v.len() <= 64 && !v.chars().any(char::is_control))
                .then(|| v.to_string())
        };
        let name = get("name")?;
        if !valid_name(name) {
            return None;
        }
        Some(Snapshot {
            pid: u32::try_from(num("pid")?).ok()?,
            info: Info {
                name: name.to_string(),
                mode: Mode::parse(get("mode")?)?,
                role: text_field("role")?,
                peer: text_field("peer")?,
                protocol: match get("protocol")? {
                    "-" => None,
                    p => Some(Protocol::parse(p)?),
                },
            },
            state: State::parse(get("state")?)?,
            since: get("since")?.parse().ok()?,
            updated: get("updated")?.parse().ok()?,
            rtt_us: match get("rtt_us")? {
                "-" => None,
                v => Some(v.parse().ok()?),
            },
            tx_bytes: num("tx_bytes")?,
            rx_bytes: num("rx_bytes")?,
            tx_rate: num("tx_rate")?,
            rx_rate: num("rx_rate")?,
            retransmits: num("retransmits")?,
            sessions: u32::try_from(num("sessions")?).ok()?,
        })
    }
}

/// The system's unix time, seconds.
pub fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

// Paths the signal handler unlinks: state, temporary, lock. Leaked
// `CString`s, set once by the first publisher of the process.
static SIGNAL_PATHS: [AtomicPtr<libc::c_char>; 3] = [
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
];

extern "C" fn on_signal(sig: libc::c_int) {
    for p in &SIGNAL_PATHS {
        let p = p.swap(std::ptr::null_mut(), Ordering::SeqCst);
        if !p.is_null() {
            // SAFETY: a NUL-terminated string leaked by `register_cleanup`;
            // unlink is async-signal-safe.
            unsafe { libc::unlink(p) };
        }
    }
    // SAFETY: signal and raise are async-signal-safe; the default action
    // ends the process with the signal, as without the handler.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn register_cleanup(paths: [&Path; 3]) {
    let mut fresh = false;
    for (slot, path) in SIGNAL_PATHS.iter().zip(paths) {
        let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
            continue;
        };
        let raw = c.into_raw();
        if slot
            .compare_exchange(
                std::ptr::null_mut(),
                raw,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            fresh = true;
        } else {
            // SAFETY: `raw` came from `into_raw` just above and was not
            // stored.
            drop(unsafe { CString::from_raw(raw) });
        }
    }
    if fresh {
        // SAFETY: installing a handler that only calls async-signal-safe
        // functions.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            for sig in [libc::SIGTERM, libc::SIGINT] {
                // A signal ignored by whoever started us (SIGINT of a
                // background job, nohup) stays ignored.
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction == libc::SIG_IGN
                {
                    continue;
                }
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    }
}

fn forget_cleanup() {
    for slot in &SIGNAL_PATHS {
        let p = slot.swap(std::ptr::null_mut(), Ordering::SeqCst);
        if !p.is_null() {
            // SAFETY: leaked by `register_cleanup`, no longer reachable by
            // the handler (swapped out).
            drop(unsafe { CString::from_raw(p) });
        }
    }
}

fn flock(f: &File, op: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

struct Files {
    state: PathBuf,
    tmp: PathBuf,
    lock_path: PathBuf,
    // Held (and locked) while the process lives.
    _lock: File,
    signal_cleanup: bool,
}

/// Publishes one instance's state file (see the module docs).
pub struct Publisher {
    files: Option<Files>,
    snap: Snapshot,
    last_write: Option<Instant>,
    last_sample: Option<(Instant, u64, u64)>,
    last_heard: Option<(Instant, u64)>,
    silent_after: Option<Duration>,
    dirty: bool,
}

impl Publisher {
    /// Starts publishing in [`dir`], in state `state`; SIGTERM/SIGINT
    /// remove the files. Never fails: a warning is logged and the publisher
    /// does nothing if the directory is unusable.
    pub fn new(info: Info, state: State) -> Publisher {
        Self::in_dir(&dir(), info, state, true)
    }

    /// As [`Publisher::new`], in `dir`, for this process's pid; with
    /// `signals` false no signal handler is installed (tests).
    pub fn in_dir(dir: &Path, info: Info, state: State, signals: bool) -> Publisher {
        Self::with_pid(dir, std::process::id(), info, state, signals)
    }

    fn with_pid(dir: &Path, pid: u32, info: Info, state: State, signals: bool) -> Publisher {
        let now = unix_now();
        let snap = Snapshot {
            pid,
            info,
            state,
            since: now,
            updated: now,
            rtt_us: None,
            tx_bytes: 0,
            rx_bytes: 0,
            tx_rate: 0,
            rx_rate: 0,
            retransmits: 0,
            sessions: 0,
        };
        let files = match Self::open(dir, pid) {
            Ok(f) => Some(f),
            Err(e) => {
                log::warn!(
                    "status: cannot publish in {} ({e}); `punchwire status` will not list this instance",
                    dir.display()
                );
                None
            }
        };
        let mut p = Publisher {
            files,
            snap,
            last_write: None,
            last_sample: None,
            last_heard: None,
            silent_after: None,
            dirty: true,
        };
        if signals && let Some(f) = &mut p.files {
            register_cleanup([&f.state, &f.tmp, &f.lock_path]);
            f.signal_cleanup = true;
        }
        p.write(Instant::now());
        p
    }

    fn open(dir: &Path, pid: u32) -> io::Result<Files> {
        // One level (its parent, /var/run, exists): create_dir_all's path
        // walking costs ~2.5 KB on MIPS.
        match fs::create_dir(dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let lock_path = dir.join(format!("{pid}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)?;
        flock(&lock, libc::LOCK_EX)?;
        Ok(Files {
            state: dir.join(format!("{pid}.state")),
            tmp: dir.join(format!(".{pid}.state.tmp")),
            lock_path,
            _lock: lock,
            signal_cleanup: false,
        })
    }

    /// Whether a state file is being published.
    pub fn is_active(&self) -> bool {
        self.files.is_some()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// The state becomes [`State::PeerSilent`] when [`Counters::heard`]
    /// has not grown for `after` while connected (and back to connected
    /// when it grows again).
    pub fn set_silence_threshold(&mut self, after: Duration) {
        self.silent_after = Some(after);
    }

    /// Changes the state; written at once.
    pub fn set_state(&mut self, state: State) {
        self.set_state_at(state, Instant::now(), unix_now());
    }

    fn set_state_at(&mut self, state: State, now: Instant, unix: i64) {
        if self.snap.state != state {
            self.snap.state = state;
            self.snap.since = unix;
            self.dirty = true;
            self.write(now);
        }
    }

    /// Changes the peer (e.g. with the port that connected); written
    /// with the next update.
    pub fn set_peer(&mut self, peer: String) {
        if self.snap.info.peer != peer {
            self.snap.info.peer = peer;
            self.dirty = true;
        }
    }

    /// Settles the wire protocol; written with the next update.
    pub fn set_protocol(&mut self, protocol: Protocol) {
        if self.snap.info.protocol != Some(protocol) {
            self.snap.info.protocol = Some(protocol);
            self.dirty = true;
        }
    }

    /// A session opened; written at most once a second.
    pub fn session_started(&mut self) {
        self.snap.sessions = self.snap.sessions.saturating_add(1);
        self.dirty = true;
        self.write_if_due(Instant::now());
    }

    /// A session ended; written at most once a second.
    pub fn session_ended(&mut self) {
        self.snap.sessions = self.snap.sessions.saturating_sub(1);
        self.dirty = true;
        self.write_if_due(Instant::now());
    }

    /// New totals; written at most once a second (goodput is measured
    /// between writes).
    pub fn update_stats(&mut self, c: &Counters) {
        self.update_stats_at(c, Instant::now(), unix_now());
    }

    /// [`Publisher::update_stats`] at explicit times.
    pub fn update_stats_at(&mut self, c: &Counters, now: Instant, unix: i64) {
        let s = &mut self.snap;
        if (s.rtt_us, s.tx_bytes, s.rx_bytes, s.retransmits)
            != (c.rtt_us, c.bytes_sent, c.bytes_received, c.retransmits)
        {
            s.rtt_us = c.rtt_us;
            s.tx_bytes = c.bytes_sent;
            s.rx_bytes = c.bytes_received;
            s.retransmits = c.retransmits;
            self.dirty = true;
        }
        match self.last_heard {
            Some((_, n)) if n == c.heard => {}
            _ => {
                self.last_heard = Some((now, c.heard));
                if self.snap.state == State::PeerSilent {
                    self.set_state_at(State::Connected, now, unix);
                }
            }
        }
        if let (Some(after), Some((t, _)), State::Connected) =
            (self.silent_after, self.last_heard, self.snap.state)
            && now.saturating_duration_since(t) >= after
        {
            self.set_state_at(State::PeerSilent, now, unix);
        }
        self.write_if_due_at(now, unix);
    }

    fn write_if_due(&mut self, now: Instant) {
        self.write_if_due_at(now, unix_now());
    }

    fn write_if_due_at(&mut self, now: Instant, unix: i64) {
        let due = self
            .last_write
            .is_none_or(|t| now.saturating_duration_since(t) >= MIN_INTERVAL);
        if due && (self.dirty || self.snap.tx_rate != 0 || self.snap.rx_rate != 0) {
            self.snap.updated = unix;
            self.write(now);
        }
    }

    fn write(&mut self, now: Instant) {
        // Goodput since the previous write.
        if let Some((t, tx, rx)) = self.last_sample {
            let dt = now.saturating_duration_since(t).as_secs_f64();
            if dt >= 0.2 {
                self.snap.tx_rate = (self.snap.tx_bytes.saturating_sub(tx) as f64 / dt) as u64;
                self.snap.rx_rate = (self.snap.rx_bytes.saturating_sub(rx) as f64 / dt) as u64;
                self.last_sample = Some((now, self.snap.tx_bytes, self.snap.rx_bytes));
            }
        } else {
            self.last_sample = Some((now, self.snap.tx_bytes, self.snap.rx_bytes));
        }
        self.last_write = Some(now);
        self.dirty = false;
        let Some(f) = &self.files else { return };
        let text = self.snap.render();
        let result = (|| {
            let mut t = File::create(&f.tmp)?;
            t.write_all(text.as_bytes())?;
            drop(t);
            fs::rename(&f.tmp, &f.state)
        })();
        if let Err(e) = result {
            log::debug!("status: writing {} failed: {e}", f.state.display());
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(f) = self.files.take() {
            if f.signal_cleanup {
                forget_cleanup();
            }
            let _ = fs::remove_file(&f.state);
            let _ = fs::remove_file(&f.tmp);
            let _ = fs::remove_file(&f.lock_path);
        }
    }
}

/// One instance found in the run directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its last snapshot.
    pub snap: Snapshot,
    /// False when the process no longer holds its lock (it died without
    /// cleaning up).
    pub alive: bool,
}

/// Every instance with a readable state file in `dir`, sorted by name
/// then pid. A missing directory is no instances; unreadable or
/// malformed files are skipped.
pub fn read_dir(dir: &Path) -> io::Result<Vec<Entry>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".state"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = fs::read_to_string(ent.path()) else {
            continue;
        };
        let Some(snap) = Snapshot::parse(&text) else {
            continue;
        };
        if snap.pid != pid {
            continue;
        }
        let alive = match File::open(dir.join(format!("{pid}.lock"))) {
            // Lockable: nobody holds it, the instance is gone.
            Ok(l) => flock(&l, libc::LOCK_SH).is_err(),
            Err(_) => false,
        };
        out.push(Entry { snap, alive });
    }
    // A handful of entries: an insertion sort is plenty, and ~3 KB smaller
    // than the slice sorts.
    let key = |e: &Entry| (e.snap.info.name.clone(), e.snap.pid);
    for i in 1..out.len() {
        let mut j = i;
        while j > 0 && key(&out[j - 1]) > key(&out[j]) {
            out.swap(j - 1, j);
            j -= 1;
        }
    }
    Ok(out)
}

/// A JSON string literal (RFC 8259 escaping).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `punchwire status --json`: `{"instances":[...]}`, one object per entry.
pub fn to_json(entries: &[Entry]) -> String {
    let mut s = String::from("{\"instances\":[");
    for (i, e) in entries.iter().enumerate() {
        let n = &e.snap;
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"name\":{},\"pid\":{},\"alive\":{},\"mode\":{},\"role\":{},\"peer\":{},\
             \"state\":{},\"last_state\":{},\"protocol\":{},\"since\":{},\"updated\":{},\
             \"rtt_us\":{},\"tx_bytes\":{},\"rx_bytes\":{},\"tx_bytes_per_s\":{},\
             \"rx_bytes_per_s\":{},\"retransmits\":{},\"sessions\":{}}}",
            json_string(&n.info.name),
            n.pid,
            e.alive,
            json_string(n.info.mode.as_str()),
            json_string(&n.info.role),
            json_string(&n.info.peer),
            json_string(if e.alive { n.state.as_str() } else { "gone" }),
            json_string(n.state.as_str()),
            n.info
                .protocol
                .map_or_else(|| "null".to_string(), |p| json_string(p.as_str())),
            n.since,
            n.updated,
            n.rtt_us
                .map_or_else(|| "null".to_string(), |v| v.to_string()),
            n.tx_bytes,
            n.rx_bytes,
            n.tx_rate,
            n.rx_rate,
            n.retransmits,
            n.sessions
        );
    }
    s.push_str("]}\n");
    s
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

fn human_rate(bytes_per_s: u64) -> String {
    let mut v = bytes_per_s as f64 * 8.0;
    let mut u = 0;
    const UNITS: [&str; 4] = ["b/s", "kb/s", "Mb/s", "Gb/s"];
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0}{}", UNITS[u])
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `punchwire status`: a header and one aligned line per entry (columns
/// padded to their widest cell, as `ip -br` aligns its own).
pub fn to_table(entries: &[Entry], unix: i64) -> String {
    let header = [
        "NAME", "MODE", "ROLE", "PEER", "STATE", "PROTO", "SINCE", "RTT", "TX/s", "RX/s", "TX",
        "RX", "RETX", "SESS", "PID",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for e in entries {
        let n = &e.snap;
        let gone = !e.alive;
        let dash = || "-".to_string();
        rows.push(vec![
            n.info.name.clone(),
            n.info.mode.as_str().to_string(),
            n.info.role.clone(),
            n.info.peer.clone(),
            if gone {
                "gone".to_string()
            } else {
                n.state.as_str().to_string()
            },
            n.info
                .protocol
                .map_or_else(dash, |p| p.as_str().to_string()),
            human_age(unix - if gone { n.updated } else { n.since }),
            n.rtt_us
                .map_or_else(dash, |us| format!("{:.1}ms", us as f64 / 1000.0)),
            if gone { dash() } else { human_rate(n.tx_rate) },
            if gone { dash() } else { human_rate(n.rx_rate) },
            human_bytes(n.tx_bytes),
            human_bytes(n.rx_bytes),
            n.retransmits.to_string(),
            n.sessions.to_string(),
            n.pid.to_string(),
        ]);
    }
    let cols = header.len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> Info {
        Info {
            name: name.to_string(),
            mode: Mode::Udp,
            role: "listen".to_string(),
            peer: "198.51.100.2:5555".to_string(),
            protocol: Some(Protocol::V012),
        }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pw-status-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn names() {
        for ok in [
            "office",
            "office_udp",
            "a",
            "tcp-1234",
            "x.y:z@w",
            &"n".repeat(64),
        ] {
            assert!(valid_name(ok), "{ok:?}");
        }
        for bad in ["", "a b", "a=b", "a\nb", "é", &"n".repeat(65), "a/b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn render_parse_round_trip() {
        let s = Snapshot {
            pid: 4242,
            info: info("office"),
            state: State::PeerSilent,
            since: 2_200_000_000,
            updated: 2_200_000_005,
            rtt_us: Some(12_345),
            tx_bytes: 20_000_000,
            rx_bytes: 7,
            tx_rate: 2_500_000,
            rx_rate: 0,
            retransmits: 3,
            sessions: 1,
        };
        assert_eq!(Snapshot::parse(&s.render()), Some(s.clone()));
        let mut t = s.clone();
        t.rtt_us = None;
        t.info.protocol = None;
        t.info.mode = Mode::Tcp;
        assert_eq!(Snapshot::parse(&t.render()), Some(t));
        // Unknown keys are ignored; a broken or missing field is not.
        let extra = s.render() + "key_of_the_future=1\n";
        assert_eq!(Snapshot::parse(&extra), Some(s.clone()));
        for (from, to) in [
            ("state=peer-silent", "state=sleeping"),
            ("pid=4242", "pid=x"),
            ("name=office", "name=bad name"),
            ("tx_bytes=20000000", "tx_bytes=-1"),
            ("punchwire-status 1", "punchwire-status 2"),
            ("sessions=1\n", ""),
        ] {
            let bad = s.render().replace(from, to);
            assert_eq!(Snapshot::parse(&bad), None, "{from} -> {to}");
        }
        assert_eq!(Snapshot::parse(""), None);
        assert_eq!(
            Snapshot::parse("punchwire-status 1\nno equals sign\n"),
            None
        );
    }

    #[test]
    fn publish_rate_limit_silence_and_cleanup() {
        let d = tempdir("pub");
        let mut p = Publisher::with_pid(&d, 7, info("a"), State::Punching, false);
        assert!(p.is_active());
        let state = d.join("7.state");
        let read = || Snapshot::parse(&fs::read_to_string(&state).unwrap()).unwrap();
        assert_eq!(read().state, State::Punching);
        p.set_silence_threshold(Duration::from_secs(3));
        let t0 = Instant::now();
        let u0 = 2_200_000_000;
        p.set_state_at(State::Connected, t0, u0);
        assert_eq!(read().state, State::Connected);
        assert_eq!(read().since, u0);
        // Within the second: counted, not written.
        let c = Counters {
            rtt_us: Some(800),
            bytes_sent: 1_000_000,
            bytes_received: 500_000,
            retransmits: 2,
            heard: 10,
        };
        p.update_stats_at(&c, t0 + Duration::from_millis(300), u0);
        assert_eq!(read().tx_bytes, 0);
        assert_eq!(p.snapshot().tx_bytes, 1_000_000);
        // A second later: written, with the goodput since the last write.
        let c2 = Counters {
            bytes_sent: 3_000_000,
            bytes_received: 1_500_000,
            heard: 20,
            ..c
        };
        p.update_stats_at(&c2, t0 + Duration::from_secs(2), u0 + 2);
        let s = read();
        assert_eq!(
            (s.tx_bytes, s.rx_bytes, s.retransmits),
            (3_000_000, 1_500_000, 2)
        );
        // Over the 2 s (and the few µs before t0) since the first write.
        assert!(
            (1_490_000..=1_500_000).contains(&s.tx_rate),
            "{}",
            s.tx_rate
        );
        assert!((745_000..=750_000).contains(&s.rx_rate), "{}", s.rx_rate);
        assert_eq!(s.rtt_us, Some(800));
        assert_eq!(s.updated, u0 + 2);
        // Nothing heard for 3 s: peer silent, written at once; heard again:
        // connected.
        p.update_stats_at(&c2, t0 + Duration::from_millis(4500), u0 + 4);
        assert_eq!(read().state, State::Connected);
        p.update_stats_at(&c2, t0 + Duration::from_secs(5), u0 + 5);
        assert_eq!(read().state, State::PeerSilent);
        assert_eq!(read().since, u0 + 5);
        let c3 = Counters { heard: 21, ..c2 };
        p.update_stats_at(&c3, t0 + Duration::from_millis(5100), u0 + 5);
        assert_eq!(read().state, State::Connected);
        p.session_started();
        assert_eq!(p.snapshot().sessions, 1);
        p.session_ended();
        p.session_ended();
        assert_eq!(p.snapshot().sessions, 0);
        // Listed as alive while the lock is held; files gone on drop.
        let entries = read_dir(&d).unwrap();
        assert_eq!(entries.len(), 1);
        assert!(entries[0].alive);
        drop(p);
        assert!(read_dir(&d).unwrap().is_empty());
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dead_instance_is_gone() {
        let d = tempdir("gone");
        fs::create_dir_all(&d).unwrap();
        // A state file whose lock nobody holds (its process was killed):
        // gone. One with no lock file at all: gone too.
        let mut s = Snapshot::parse(
            &Publisher::with_pid(&d, 1, info("x"), State::Connected, false)
                .snapshot()
                .render(),
        )
        .unwrap();
        for (pid, name) in [(11u32, "b"), (12, "a")] {
            s.pid = pid;
            s.info.name = name.to_string();
            fs::write(d.join(format!("{pid}.state")), s.render()).unwrap();
        }
        File::create(d.join("11.lock")).unwrap();
        let live = Publisher::with_pid(&d, 13, info("c"), State::Punching, false);
        // Junk is skipped: not a pid, malformed, pid mismatch.
        fs::write(d.join("junk.state"), s.render()).unwrap();
        fs::write(d.join("14.state"), "garbage").unwrap();
        fs::write(d.join("15.state"), s.render()).unwrap();
        let e = read_dir(&d).unwrap();
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.snap.info.name.as_str(), e.snap.pid, e.alive))
            .collect();
        assert_eq!(got, [("a", 12, false), ("b", 11, false), ("c", 13, true)]);
        let table = to_table(&e, s.since + 65);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("NAME  MODE  ROLE    PEER"), "{table}");
        assert!(lines[1].contains(" gone "), "{table}");
        assert!(lines[3].contains(" punching "), "{table}");
        // Aligned: every line's STATE column starts at the same offset.
        let col = lines[0].find("STATE").unwrap();
        for l in &lines[1..] {
            assert!(
                l[col..].starts_with("gone") || l[col..].starts_with("punching"),
                "{l}"
            );
        }
        let v: serde_json::Value = serde_json::from_str(&to_json(&e)).unwrap();
        let inst = v["instances"].as_array().unwrap();
        assert_eq!(inst.len(), 3);
        assert_eq!(inst[0]["state"], "gone");
        assert_eq!(inst[0]["last_state"], "connected");
        assert_eq!(inst[0]["alive"], false);
        assert_eq!(inst[2]["state"], "punching");
        assert_eq!(inst[2]["protocol"], "v012");
        assert_eq!(inst[2]["rtt_us"], serde_json::Value::Null);
        drop(live);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn json_escaping() {
        let nasty = "a\"b\\c\nd\te\u{1}f\u{7f}g\u{e9}h";
        let lit = json_string(nasty);
        let back: String = serde_json::from_str(&lit).unwrap();
        assert_eq!(back, nasty);
        assert_eq!(json_string("x"), "\"x\"");
    }

    #[test]
    fn unusable_dir_is_harmless() {
        let d = tempdir("file");
        fs::write(&d, "a file, not a directory").unwrap();
        let mut p = Publisher::with_pid(&d, 9, info("z"), State::Punching, false);
        assert!(!p.is_active());
        p.set_state(State::Connected);
        p.update_stats(&Counters::default());
        drop(p);
        fs::remove_file(&d).unwrap();
    }

    #[test]
    fn human_formats() {
        assert_eq!(human_bytes(999), "999B");
        assert_eq!(human_bytes(20_000_000), "20.0MB");
        assert_eq!(human_rate(2_500_000), "20.0Mb/s");
        assert_eq!(human_rate(0), "0b/s");
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(65), "1m05s");
        assert_eq!(human_age(7260), "2h01m");
        assert_eq!(human_age(90_000), "1d01h");
        assert_eq!(human_age(-3), "0s");
    }
}
