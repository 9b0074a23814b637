//! `election_hello`: [`parse_hello`] on any bytes read from a connection,
//! and the nonce comparison.
//!
//! Input: the bytes; when there are at least 8, the first 8 are also taken
//! as this side's nonce. Invariants: no panic; a hello is exactly
//! `PWH1` + 8 bytes, and it is what `Election::Nonce(n).hello()` writes;
//! the parts two sides derive from the same pair of nonces are opposite
//! (leader/follower) or both self-connected when equal.

use punchwire_core::punch::Election;
use punchwire_core::punch::Part;
use punchwire_core::punch::election::{HELLO_LEN, HELLO_MAGIC, parse_hello, part_from_nonces};

pub fn run(data: &[u8]) {
    let parsed = parse_hello(data);
    let is_hello = data.len() == HELLO_LEN && data.starts_with(HELLO_MAGIC);
    assert_eq!(
        parsed.is_some(),
        is_hello,
        "parse_hello({data:02x?}) = {parsed:?}"
    );
    if let Some(nonce) = parsed {
        assert_eq!(
            Election::Nonce(nonce).hello().as_ref().map(|h| &h[..]),
            Some(data)
        );
    }
    if data.len() >= 8 {
        let mine = u64::from_be_bytes(data[..8].try_into().unwrap());
        let theirs = parsed.unwrap_or(!mine);
        let (a, b) = (
            part_from_nonces(mine, theirs),
            part_from_nonces(theirs, mine),
        );
        match (a, b) {
            (Part::Leader, Part::Follower) | (Part::Follower, Part::Leader) => {
                assert_ne!(mine, theirs)
            }
            (Part::SelfConnected, Part::SelfConnected) => assert_eq!(mine, theirs),
            other => panic!("nonces {mine:#x} / {theirs:#x} give {other:?}"),
        }
        assert_eq!(a == Part::Leader, mine > theirs);
    }
}
