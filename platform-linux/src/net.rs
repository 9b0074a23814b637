//! The core's socket traits on Linux.
//!
//! Sockets live in a table indexed by small generation-checked handles and
//! are all registered, edge-triggered, for read and write with one `mio`
//! poll (epoll). [`Wait::wait`] is `epoll_wait` until the deadline; per the
//! core's contract the driver then retries whatever it waits for, so the
//! events themselves are not inspected.
//!
//! Socket discipline for punching: SO_REUSEADDR + SO_REUSEPORT before
//! `bind`; non-blocking `connect`; connect progress read from the kernel's
//! TCP state (TCP_INFO) and SO_ERROR; IP_TTL per socket; close drains what
//! was received and shuts the write side before closing, never with
//! linger 0, so no close here sends RST. The one RST is `tcp_abort`, which
//! only the tunnel uses, on a local stream that was reset.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use punchwire_core::net::{ConnectStatus, NetError, NetResult, Tcp, Udp, Wait};
use punchwire_core::time::{self, Instant};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::clock;

/// A socket in the table: index and generation, so a stale handle to a
/// reused slot is refused instead of touching someone else's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handle {
    index: u32,
    generation: u32,
}

enum Entry {
    Udp(UdpSocket),
    Tcp(Socket),
    Listener(Socket),
}

impl Entry {
    fn fd(&self) -> RawFd {
        match self {
            Entry::Udp(s) => s.as_raw_fd(),
            Entry::Tcp(s) | Entry::Listener(s) => s.as_raw_fd(),
        }
    }
}

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

/// The Linux backend: a socket table and an epoll instance.
pub struct LinuxNet {
    poll: Poll,
    events: Events,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Address the local-service side binds and connects to.
    local: Ipv4Addr,
}

/// Maps an OS error onto the core's small error type.
pub fn net_error(e: &io::Error) -> NetError {
    if e.kind() == io::ErrorKind::WouldBlock {
        return NetError::WouldBlock;
    }
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => NetError::Refused,
        Some(libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED) => NetError::Reset,
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN | libc::ENETDOWN) => {
            NetError::Unreachable
        }
        Some(libc::EADDRINUSE | libc::EADDRNOTAVAIL) => NetError::AddrInUse,
        Some(libc::ETIMEDOUT) => NetError::TimedOut,
        Some(libc::ENOTCONN | libc::EBADF | libc::ESHUTDOWN) => NetError::Closed,
        Some(libc::EMSGSIZE) => NetError::TooLong,
        Some(libc::ENOBUFS | libc::ENOMEM) => NetError::NoBuffers,
        Some(code) => NetError::Other(code),
        None => NetError::Other(0),
    }
}

fn map<T>(r: io::Result<T>) -> NetResult<T> {
    r.map_err(|e| net_error(&e))
}

/// The kernel's TCP state of a socket (`TCP_ESTABLISHED` = 1, …).
fn tcp_state(fd: RawFd) -> io::Result<u8> {
    // SAFETY: tcp_info is plain old data; getsockopt writes at most `len`
    // bytes into it and we pass its exact size.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(info.tcpi_state)
    }
}

const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;
const TCP_SYN_RECV: u8 = 3;
const TCP_CLOSE: u8 = 7;

impl LinuxNet {
    /// A backend whose local-service side uses 127.0.0.1.
    pub fn new() -> io::Result<Self> {
        Ok(LinuxNet {
            poll: Poll::new()?,
            events: Events::with_capacity(256),
            slots: Vec::new(),
            free: Vec::new(),
            local: Ipv4Addr::LOCALHOST,
        })
    }

    fn insert(&mut self, entry: Entry) -> NetResult<Handle> {
        let fd = entry.fd();
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        map(self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(index as usize),
            Interest::READABLE | Interest::WRITABLE,
        ))
        .inspect_err(|_| self.free.push(index))?;
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.entry = Some(entry);
        Ok(Handle {
            index,
            generation: slot.generation,
        })
    }

    fn entry(&self, h: Handle) -> NetResult<&Entry> {
        match self.slots.get(h.index as usize) {
            Some(Slot {
                generation,
                entry: Some(e),
            }) if *generation == h.generation => Ok(e),
            _ => Err(NetError::Closed),
        }
    }

    fn tcp(&self, h: Handle) -> NetResult<&Socket> {
        match self.entry(h)? {
            Entry::Tcp(s) => Ok(s),
            _ => Err(NetError::Closed),
        }
    }

    fn udp(&self, h: Handle) -> NetResult<&UdpSocket> {
        match self.entry(h)? {
            Entry::Udp(s) => Ok(s),
            _ => Err(NetError::Closed),
        }
    }

    fn remove(&mut self, h: Handle) -> Option<Entry> {
        self.entry(h).ok()?;
        let slot = &mut self.slots[h.index as usize];
        let entry = slot.entry.take()?;
        // Deregistering can only fail for an fd epoll does not know, and the
        // fd is closed right after anyway.
        let _ = self.poll.registry().deregister(&mut SourceFd(&entry.fd()));
        self.free.push(h.index);
        Some(entry)
    }

    /// Takes a TCP socket out of the table (deregistered, still
    /// non-blocking), e.g. the punch winner for a relay.
    pub fn take_tcp(&mut self, h: Handle) -> Option<Socket> {
        match self.remove(h)? {
            Entry::Tcp(s) => Some(s),
            other => {
                // Not a TCP socket: dropping closes it; the caller erred.
                drop(other);
                None
            }
        }
    }

    fn stream_socket() -> NetResult<Socket> {
        let s = map(Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)))?;
        map(s.set_nonblocking(true))?;
        map(s.set_cloexec(true))?;
        Ok(s)
    }
}

fn v4(addr: SocketAddrV4) -> SockAddr {
    SockAddr::from(SocketAddr::V4(addr))
}

/// Receive and send buffer asked for on UDP sockets.
const UDP_BUFFER: usize = 4 << 20;

/// Sets both socket buffers to `bytes`: SO_RCVBUF/SO_SNDBUF (capped by
/// `net.core.rmem_max`/`wmem_max`), then, where that fell short and we may
/// (root, as on a router), SO_RCVBUFFORCE/SO_SNDBUFFORCE. Best effort: a
/// smaller buffer only costs throughput.
fn set_udp_buffers(s: &Socket, bytes: usize) {
    let _ = s.set_recv_buffer_size(bytes);
    let _ = s.set_send_buffer_size(bytes);
    let force = |opt: libc::c_int| {
        let v = bytes as libc::c_int;
        // SAFETY: a plain int option on a socket we own, its exact size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    // The kernel reports twice the size it grants.
    if s.recv_buffer_size().is_ok_and(|n| n < bytes) {
        force(libc::SO_RCVBUFFORCE);
    }
    if s.send_buffer_size().is_ok_and(|n| n < bytes) {
        force(libc::SO_SNDBUFFORCE);
    }
}

/// Gracefully closes a TCP socket: reads away what has arrived (unread data
/// would make close send RST), sends FIN, closes. Never linger 0.
pub fn close_gracefully(s: &Socket) {
    let mut sink = [0u8; 4096];
    for _ in 0..64 {
        match (&*s).read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    // ENOTCONN for a socket that never connected is expected.
    let _ = s.shutdown(Shutdown::Write);
}

impl Udp for LinuxNet {
    type UdpSocket = Handle;

    fn udp_bind(&mut self, port: u16) -> NetResult<Handle> {
        let s = map(Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)))?;
        map(s.set_nonblocking(true))?;
        map(s.set_cloexec(true))?;
        // A tunnel receives bursts of a whole pacing bucket between two
        // polls: the default 208 KB receive buffer overflowed in the lab
        // (more drops in our own socket than on the emulated path).
        set_udp_buffers(&s, UDP_BUFFER);
        map(s.bind(&v4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))))?;
        self.insert(Entry::Udp(s.into()))
    }

    fn udp_send_to(&mut self, socket: Handle, datagram: &[u8], to: SocketAddrV4) -> NetResult<()> {
        let n = map(self.udp(socket)?.send_to(datagram, to))?;
        if n == datagram.len() {
            Ok(())
        } else {
            Err(NetError::TooLong)
        }
    }

    fn udp_recv_from(
        &mut self,
        socket: Handle,
        buf: &mut [u8],
    ) -> NetResult<(usize, SocketAddrV4)> {
        let (n, from) = map(self.udp(socket)?.recv_from(buf))?;
        match from {
            SocketAddr::V4(a) => Ok((n, a)),
            SocketAddr::V6(_) => Err(NetError::Other(libc::EAFNOSUPPORT)),
        }
    }

    fn udp_set_ttl(&mut self, socket: Handle, ttl: u8) -> NetResult<()> {
        map(self.udp(socket)?.set_ttl(u32::from(ttl)))
    }

    fn udp_close(&mut self, socket: Handle) {
        self.remove(socket);
    }
}

impl Tcp for LinuxNet {
    type TcpSocket = Handle;
    type Listener = Handle;

    fn tcp_bind_reuse(&mut self, port: u16) -> NetResult<Handle> {
        let s = Self::stream_socket()?;
        map(s.set_reuse_address(true))?;
        map(s.set_reuse_port(true))?;
        map(s.bind(&v4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))))?;
        self.insert(Entry::Tcp(s))
    }

    fn tcp_connect(&mut self, socket: Handle, peer: SocketAddrV4) -> NetResult<()> {
        match self.tcp(socket)?.connect(&v4(peer)) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EALREADY) => Ok(()),
            Err(e) => Err(net_error(&e)),
        }
    }

    fn tcp_status(&mut self, socket: Handle) -> ConnectStatus {
        let s = match self.tcp(socket) {
            Ok(s) => s,
            Err(e) => return ConnectStatus::Failed(e),
        };
        match tcp_state(s.as_raw_fd()) {
            Ok(TCP_SYN_SENT) => ConnectStatus::Pending,
            Ok(TCP_SYN_RECV) => ConnectStatus::Handshaking,
            Ok(TCP_CLOSE) => match s.take_error() {
                Ok(Some(e)) => ConnectStatus::Failed(net_error(&e)),
                _ => ConnectStatus::Failed(NetError::Closed),
            },
            // Established, or already past it (the peer's FIN may have come
            // with its first bytes): reads will tell.
            Ok(TCP_ESTABLISHED) | Ok(_) => ConnectStatus::Connected,
            Err(e) => ConnectStatus::Failed(net_error(&e)),
        }
    }

    fn tcp_set_ttl(&mut self, socket: Handle, ttl: u8) -> NetResult<()> {
        map(self.tcp(socket)?.set_ttl_v4(u32::from(ttl)))
    }

    fn tcp_read(&mut self, socket: Handle, buf: &mut [u8]) -> NetResult<usize> {
        let mut s = self.tcp(socket)?;
        map(s.read(buf))
    }

    fn tcp_write(&mut self, socket: Handle, buf: &[u8]) -> NetResult<usize> {
        let mut s = self.tcp(socket)?;
        map(s.write(buf))
    }

    fn tcp_shutdown_write(&mut self, socket: Handle) -> NetResult<()> {
        map(self.tcp(socket)?.shutdown(Shutdown::Write))
    }

    fn tcp_close(&mut self, socket: Handle) {
        if let Some(Entry::Tcp(s)) = self.remove(socket) {
            close_gracefully(&s);
        }
    }

    fn tcp_abort(&mut self, socket: Handle) {
        if let Some(Entry::Tcp(s)) = self.remove(socket) {
            // Linger 0: close sends RST (only for local tunnel streams that
            // were reset; punch sockets never come here).
            let _ = s.set_linger(Some(Duration::ZERO));
        }
    }

    fn tcp_listen(&mut self, port: u16) -> NetResult<Handle> {
        let s = Self::stream_socket()?;
        map(s.set_reuse_address(true))?;
        map(s.bind(&v4(SocketAddrV4::new(self.local, port))))?;
        map(s.listen(16))?;
        self.insert(Entry::Listener(s))
    }

    fn tcp_accept(&mut self, listener: Handle) -> NetResult<Handle> {
        let Entry::Listener(l) = self.entry(listener)? else {
            return Err(NetError::Closed);
        };
        let (s, _) = map(l.accept())?;
        map(s.set_nonblocking(true))?;
        map(s.set_cloexec(true))?;
        self.insert(Entry::Tcp(s))
    }

    fn tcp_unlisten(&mut self, listener: Handle) {
        self.remove(listener);
    }

    fn tcp_connect_local(&mut self, port: u16) -> NetResult<Handle> {
        let s = Self::stream_socket()?;
        match s.connect(&v4(SocketAddrV4::new(self.local, port))) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(net_error(&e)),
        }
        self.insert(Entry::Tcp(s))
    }
}

impl Wait for LinuxNet {
    fn now(&mut self) -> Instant {
        clock::now()
    }

    fn wait(&mut self, deadline: Option<Instant>) -> NetResult<Instant> {
        let timeout = deadline.map(|d| {
            let us = time::micros_between(clock::now(), d);
            // epoll has millisecond resolution: round up so a deadline is
            // never woken for early and spun on.
            Duration::from_micros(us.div_ceil(1000) * 1000)
        });
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(clock::now()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(clock::now()),
            Err(e) => Err(net_error(&e)),
        }
    }
}
