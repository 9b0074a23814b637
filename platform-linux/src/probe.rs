//! The path-probe capability on Linux:
//! [`IcmpProbe`](punchwire_core::pathprobe::net::IcmpProbe) on UDP sockets
//! with `IP_RECVERR`, plus a [`Wait`] of their own.
//!
//! Each probe socket is a non-blocking, unconnected UDP socket on an
//! ephemeral port. With `IP_RECVERR` on, the kernel queues every ICMP error
//! that quotes one of its datagrams on the socket's error queue (an
//! unconnected socket gets them too; without the option only a connected
//! socket sees any, and only as a bare errno). `recvmsg(MSG_ERRQUEUE)`
//! returns one error per call: the message's address is the original
//! destination (so the probe's port says which TTL it was), and an
//! `IP_RECVERR` control message carries a `sock_extended_err` (origin
//! `SO_EE_ORIGIN_ICMP`, the ICMP type and code) followed by the offender's
//! address (`SO_EE_OFFENDER`). While errors are queued, `poll` reports
//! `POLLERR`, which is what [`Wait::wait`] waits for.
//!
//! [`LinuxProbe`] is separate from [`LinuxNet`](crate::net::LinuxNet) on
//! purpose: probing runs before the punch, for well under a second, and
//! needs nothing of the punch's epoll loop. A caller that wants it inside
//! one loop can register [`LinuxProbe::raw_fd`] with its own poller.

use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use punchwire_core::net::{NetError, NetResult, Wait};
use punchwire_core::pathprobe::IcmpKind;
use punchwire_core::pathprobe::net::{IcmpProbe, IcmpReport};
use punchwire_core::time::{self, Instant};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::clock;

/// Probe sockets and a poll over them.
#[derive(Default)]
pub struct LinuxProbe {
    sockets: Vec<Option<Socket>>,
}

/// Handle of one probe socket (an index in [`LinuxProbe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeHandle(usize);

fn net_error(e: &io::Error) -> NetError {
    match e.kind() {
        io::ErrorKind::WouldBlock => NetError::WouldBlock,
        io::ErrorKind::AddrInUse => NetError::AddrInUse,
        _ => match e.raw_os_error() {
            Some(libc::ENOBUFS) => NetError::NoBuffers,
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH) => NetError::Unreachable,
            Some(code) => NetError::Other(code),
            None => NetError::Other(0),
        },
    }
}

impl LinuxProbe {
    /// No sockets yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn socket(&self, h: ProbeHandle) -> NetResult<&Socket> {
        self.sockets
            .get(h.0)
            .and_then(Option::as_ref)
            .ok_or(NetError::Closed)
    }

    /// The socket's file descriptor, to register with another poller
    /// (readable for datagrams, `EPOLLERR` for queued ICMP errors).
    pub fn raw_fd(&self, h: ProbeHandle) -> Option<RawFd> {
        self.socket(h).ok().map(AsRawFd::as_raw_fd)
    }

    /// The socket's local port.
    pub fn local_port(&self, h: ProbeHandle) -> Option<u16> {
        let addr = self.socket(h).ok()?.local_addr().ok()?;
        addr.as_socket().map(|a| a.port())
    }

    /// Discards ordinary datagrams queued on the socket.
    fn discard_datagrams(s: &Socket) {
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        while s.recv(&mut buf).is_ok() {}
    }
}

/// Reads one entry of the socket's error queue.
fn recv_error(fd: RawFd) -> io::Result<Option<IcmpReport>> {
    // SAFETY: zeroed sockaddr_in / msghdr are valid values; recvmsg writes
    // at most msg_namelen / msg_controllen bytes into the buffers we own,
    // and the control messages are walked with the CMSG_* macros, which
    // stay inside msg_controllen.
    unsafe {
        let mut name: libc::sockaddr_in = zeroed();
        let mut data = [0u8; 64];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // Room for a sock_extended_err and the offender, aligned.
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = zeroed();
        msg.msg_name = (&raw mut name).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>() as _;
        let n = libc::recvmsg(fd, &raw mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if i32::from(name.sin_family) != libc::AF_INET {
            return Ok(None);
        }
        let to = SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)),
            u16::from_be(name.sin_port),
        );
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::SOL_IP && c.cmsg_type == libc::IP_RECVERR {
                let ee_ptr = libc::CMSG_DATA(cmsg).cast::<libc::sock_extended_err>();
                let ee = ee_ptr.read_unaligned();
                if ee.ee_origin != libc::SO_EE_ORIGIN_ICMP {
                    return Ok(None);
                }
                let need = size_of::<libc::sock_extended_err>() + size_of::<libc::sockaddr_in>();
                let have = c.cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                if have < need {
                    return Ok(None);
                }
                let off = ee_ptr
                    .cast::<u8>()
                    .add(size_of::<libc::sock_extended_err>())
                    .cast::<libc::sockaddr_in>()
                    .read_unaligned();
                if i32::from(off.sin_family) != libc::AF_INET {
                    return Ok(None);
                }
                let offender = Ipv4Addr::from(u32::from_be(off.sin_addr.s_addr));
                let kind = match (ee.ee_type, ee.ee_code) {
                    (11, _) => IcmpKind::TimeExceeded,
                    (3, code) => IcmpKind::Unreachable(code),
                    (t, code) => IcmpKind::Other(t, code),
                };
                return Ok(Some(IcmpReport { to, offender, kind }));
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
        Ok(None)
    }
}

impl IcmpProbe for LinuxProbe {
    type ProbeSocket = ProbeHandle;

    fn probe_open(&mut self) -> NetResult<ProbeHandle> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| net_error(&e))?;
        s.set_nonblocking(true).map_err(|e| net_error(&e))?;
        let on: libc::c_int = 1;
        // SAFETY: a valid fd and a c_int option value of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_IP,
                libc::IP_RECVERR,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(net_error(&io::Error::last_os_error()));
        }
        let any = SocketAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        s.bind(&SockAddr::from(any)).map_err(|e| net_error(&e))?;
        let slot = self.sockets.iter().position(Option::is_none);
        let i = match slot {
            Some(i) => {
                self.sockets[i] = Some(s);
                i
            }
            None => {
                self.sockets.push(Some(s));
                self.sockets.len() - 1
            }
        };
        Ok(ProbeHandle(i))
    }

    fn probe_send(
        &mut self,
        socket: ProbeHandle,
        ttl: u8,
        to: SocketAddrV4,
        payload: &[u8],
    ) -> NetResult<()> {
        let s = self.socket(socket)?;
        s.set_ttl_v4(u32::from(ttl)).map_err(|e| net_error(&e))?;
        let to = SockAddr::from(SocketAddr::from(to));
        // An ICMP error also sets the socket's pending error, and the next
        // send returns it instead of sending (seen in the lab: the TTL-1
        // answer failed the TTL-2 probe). The error queue keeps the
        // report; clear the pending error and send.
        let mut tries = 0;
        loop {
            let _ = s.take_error();
            match s.send_to(payload, &to) {
                Ok(_) => return Ok(()),
                Err(e) if tries < 4 && e.kind() != io::ErrorKind::WouldBlock => tries += 1,
                Err(e) => return Err(net_error(&e)),
            }
        }
    }

    fn probe_recv_error(&mut self, socket: ProbeHandle) -> NetResult<IcmpReport> {
        let s = self.socket(socket)?;
        Self::discard_datagrams(s);
        loop {
            match recv_error(s.as_raw_fd()) {
                Ok(Some(r)) => return Ok(r),
                // Not an ICMP error about an IPv4 datagram: skip it.
                Ok(None) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    return Err(NetError::WouldBlock);
                }
                Err(e) => return Err(net_error(&e)),
            }
        }
    }

    fn probe_close(&mut self, socket: ProbeHandle) {
        if let Some(slot) = self.sockets.get_mut(socket.0) {
            *slot = None;
        }
    }
}

impl Wait for LinuxProbe {
    fn now(&mut self) -> Instant {
        clock::now()
    }

    /// `poll` on every open probe socket (readable or error queued), up to
    /// `deadline`.
    fn wait(&mut self, deadline: Option<Instant>) -> NetResult<Instant> {
        let mut fds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .flatten()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let us = time::micros_between(clock::now(), d);
                i32::try_from(us.div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        // SAFETY: fds is a live, correctly sized array of pollfd.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(net_error(&e));
            }
        }
        Ok(clock::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use punchwire_core::pathprobe::{self, ProbeConfig, Reason};

    /// On loopback nothing expires and nothing answers the probe ports but
    /// the kernel itself: every TTL draws a port unreachable from the
    /// destination, i.e. the peer answers at hop 1 and priming is off.
    #[test]
    fn loopback_peer_is_hop_one() {
        let mut net = LinuxProbe::new();
        let mut cfg = ProbeConfig::new(Ipv4Addr::LOCALHOST);
        cfg.max_ttl = 3;
        let o = pathprobe::learn(&mut net, cfg).expect("probe socket");
        assert_eq!(o.reason, Reason::BelowPeer { peer_hop: 1 });
        assert_eq!(o.ttl, 0);
    }

    #[test]
    fn reports_the_original_destination_and_the_offender() {
        let mut net = LinuxProbe::new();
        let s = net.probe_open().unwrap();
        assert!(net.local_port(s).is_some_and(|p| p != 0));
        assert_eq!(net.probe_recv_error(s), Err(NetError::WouldBlock));
        let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 33500);
        net.probe_send(s, 1, to, b"x").unwrap();
        let deadline = time::add_millis(net.now(), 1000);
        let report = loop {
            match net.probe_recv_error(s) {
                Ok(r) => break r,
                Err(NetError::WouldBlock) => {
                    let now = net.wait(Some(deadline)).unwrap();
                    assert!(time::micros(now) < time::micros(deadline), "no ICMP error");
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(report.to, to);
        assert_eq!(report.offender, Ipv4Addr::LOCALHOST);
        assert_eq!(report.kind, IcmpKind::Unreachable(3));
        net.probe_close(s);
        assert_eq!(net.probe_recv_error(s), Err(NetError::Closed));
    }
}
