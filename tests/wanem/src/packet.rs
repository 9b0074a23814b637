//! IPv4-over-Ethernet helpers: header checks, TTL decrement, ICMP errors.

pub const ETH_HLEN: usize = 14;

/// Internet checksum over `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        sum += (*b as u32) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A validated view of an IPv4 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Info {
    pub ihl: usize,
    pub total_len: usize,
    pub ttl: u8,
    pub proto: u8,
    pub dont_fragment: bool,
    pub frag_offset: u16,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

/// Parse the IPv4 header of an Ethernet frame; `None` if it is not a sane one.
pub fn parse(frame: &[u8]) -> Option<Ipv4Info> {
    let ip = frame.get(ETH_HLEN..)?;
    if frame[12..14] != [0x08, 0x00] || ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let total_len = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if ihl < 20 || total_len < ihl || total_len > ip.len() {
        return None;
    }
    let flags = u16::from_be_bytes([ip[6], ip[7]]);
    Some(Ipv4Info {
        ihl,
        total_len,
        ttl: ip[8],
        proto: ip[9],
        dont_fragment: flags & 0x4000 != 0,
        frag_offset: flags & 0x1fff,
        src: ip[12..16].try_into().unwrap(),
        dst: ip[16..20].try_into().unwrap(),
    })
}

/// Decrement the TTL and fix the header checksum (RFC 1624 incremental update).
pub fn decrement_ttl(frame: &mut [u8]) {
    let ip = &mut frame[ETH_HLEN..];
    let old = u16::from_be_bytes([ip[8], ip[9]]);
    ip[8] -= 1;
    let new = u16::from_be_bytes([ip[8], ip[9]]);
    let hc = u16::from_be_bytes([ip[10], ip[11]]);
    // HC' = ~(~HC + ~m + m')
    let mut sum = (!hc) as u32 + (!old) as u32 + new as u32;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Whether an ICMP error may be sent about this packet (RFC 1122: not about
/// ICMP errors, not about non-first fragments, not to broadcast/multicast).
pub fn may_send_icmp_error(frame: &[u8], info: &Ipv4Info) -> bool {
    if info.frag_offset != 0 || info.src[0] >= 224 || info.src == [0; 4] {
        return false;
    }
    if info.proto == 1 {
        let t = frame.get(ETH_HLEN + info.ihl).copied().unwrap_or(3);
        // Only echo request / reply and other queries.
        return matches!(t, 0 | 8 | 13 | 14);
    }
    true
}

/// Build an ICMP error frame answering `frame` (received from the neighbour
/// whose MAC is the frame's source), sent from `own_mac`/`own_ip`.
/// `extra` fills bytes 4..8 of the ICMP header (next-hop MTU for "frag needed").
pub fn icmp_error(
    frame: &[u8],
    info: &Ipv4Info,
    own_mac: [u8; 6],
    own_ip: [u8; 4],
    icmp_type: u8,
    code: u8,
    extra: u32,
) -> Vec<u8> {
    let quoted_len = (info.ihl + 8).min(info.total_len);
    let quoted = &frame[ETH_HLEN..ETH_HLEN + quoted_len];
    let ip_len = 20 + 8 + quoted_len;
    let mut out = Vec::with_capacity(ETH_HLEN + ip_len);
    out.extend_from_slice(&frame[6..12]); // to the sender
    out.extend_from_slice(&own_mac);
    out.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 1;
    ip[12..16].copy_from_slice(&own_ip);
    ip[16..20].copy_from_slice(&info.src);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&ip);
    let icmp_start = out.len();
    out.extend_from_slice(&[icmp_type, code, 0, 0]);
    out.extend_from_slice(&extra.to_be_bytes());
    out.extend_from_slice(quoted);
    let c = checksum(&out[icmp_start..]);
    out[icmp_start + 2..icmp_start + 4].copy_from_slice(&c.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ttl: u8) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HLEN];
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12] = 8;
        let mut ip = vec![
            0x45, 0, 0, 28, 0x12, 0x34, 0x40, 0, ttl, 17, 0, 0, 203, 0, 113, 2, 198, 51, 100, 2,
        ];
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x9c, 0x40, 0x9c, 0x40, 0, 8, 0, 0]);
        f
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        for ttl in [2u8, 64, 255, 1 + 1] {
            let mut f = frame(ttl);
            decrement_ttl(&mut f);
            assert_eq!(f[ETH_HLEN + 8], ttl - 1);
            assert_eq!(checksum(&f[ETH_HLEN..ETH_HLEN + 20]), 0);
        }
    }

    #[test]
    fn parse_and_icmp_error() {
        let f = frame(1);
        let info = parse(&f).unwrap();
        assert_eq!(info.ttl, 1);
        assert!(info.dont_fragment);
        assert!(may_send_icmp_error(&f, &info));
        let e = icmp_error(&f, &info, [2, 0, 0, 0, 0, 9], [203, 0, 113, 1], 11, 0, 0);
        let ei = parse(&e).unwrap();
        assert_eq!(ei.dst, [203, 0, 113, 2]);
        assert_eq!(ei.proto, 1);
        assert_eq!(&e[0..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(checksum(&e[ETH_HLEN..ETH_HLEN + 20]), 0);
        assert_eq!(checksum(&e[ETH_HLEN + 20..]), 0);
        assert!(!may_send_icmp_error(&e, &ei));
        assert!(parse(&f[..20]).is_none());
    }
}
