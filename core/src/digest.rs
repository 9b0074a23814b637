//! The frame digest: the first 11 bytes of MD5 over the uncompressed payload.
//!
//! It is an error check against corruption and mis-decoding, not security:
//! anyone can forge a frame with a matching digest.

use crate::frame::DIGEST_LEN;

/// MD5-11 of a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; DIGEST_LEN]);

impl Digest {
    /// Digest of `payload`.
    pub fn of(payload: &[u8]) -> Self {
        let full = md5::compute(payload);
        let mut d = [0u8; DIGEST_LEN];
        d.copy_from_slice(&full.0[..DIGEST_LEN]);
        Digest(d)
    }

    /// Whether `payload` has this digest.
    pub fn matches(&self, payload: &[u8]) -> bool {
        Digest::of(payload) == *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_payload() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        let d = Digest::of(b"");
        assert_eq!(
            d.0,
            [
                0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09
            ]
        );
        assert!(d.matches(b""));
        assert!(!d.matches(b"x"));
    }
}
