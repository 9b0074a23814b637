//! `inflate`: [`Inflater::inflate`] on any stream and any declared length.
//!
//! Input: `len: u16 (big-endian) | zlib stream`, as a `C` frame carries
//! them; the length is taken modulo `MAX_PAYLOAD + 1`. Invariants:
//! * never panics, never writes past the `len` bytes it is given (the
//!   buffer around them is checked), never returns more than `len`;
//! * agrees with miniz_oxide's own growing-buffer inflater limited to
//!   `len` (`decompress_to_vec_zlib_with_limit`): the same bytes when the
//!   stream fits, `TooLong` when it inflates past `len`, an error when the
//!   stream is bad;
//! * state is not carried between frames: an `Inflater` reused after
//!   another stream (a prefix of this one) gives the fresh result.

use miniz_oxide::inflate::{TINFLStatus, decompress_to_vec_zlib_with_limit};
use punchwire_core::compress::{InflateError, Inflater};
use punchwire_core::frame::MAX_PAYLOAD;

const GUARD: usize = 64;
const CANARY: u8 = 0x5a;

fn inflate_guarded(
    inf: &mut Inflater,
    stream: &[u8],
    len: usize,
) -> (Result<usize, InflateError>, Vec<u8>) {
    let mut buf = vec![CANARY; GUARD + len + GUARD];
    let r = crate::alloc_count::no_alloc("Inflater::inflate", || {
        inf.inflate(stream, &mut buf[GUARD..GUARD + len])
    });
    assert!(
        buf[..GUARD].iter().all(|&b| b == CANARY),
        "wrote before the buffer"
    );
    assert!(
        buf[GUARD + len..].iter().all(|&b| b == CANARY),
        "wrote past the declared length"
    );
    if let Ok(n) = r {
        assert!(n <= len, "returned {n} > {len}");
    }
    (r, buf[GUARD..GUARD + len].to_vec())
}

pub fn run(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let len = usize::from(u16::from_be_bytes([data[0], data[1]])) % (MAX_PAYLOAD + 1);
    let stream = &data[2..];

    let mut inf = Inflater::new();
    let (got, out) = inflate_guarded(&mut inf, stream, len);

    match decompress_to_vec_zlib_with_limit(stream, len) {
        Ok(reference) => {
            let n = got.unwrap_or_else(|e| {
                panic!(
                    "reference inflates {} bytes, ours fails: {e:?}",
                    reference.len()
                )
            });
            assert_eq!(&out[..n], &reference[..], "inflated bytes differ");
        }
        Err(e) if e.status == TINFLStatus::HasMoreOutput => {
            assert_eq!(got, Err(InflateError::TooLong), "reference: past the limit");
        }
        Err(e) => assert!(
            got.is_err(),
            "reference fails ({:?}), ours gives {got:?}",
            e.status
        ),
    }

    // Reuse: first a prefix (often a truncated stream), then the whole one.
    let mut reused = Inflater::new();
    let cut = stream.len() / 2;
    let _ = inflate_guarded(&mut reused, &stream[..cut], len);
    let (again, out2) = inflate_guarded(&mut reused, stream, len);
    assert_eq!(again, got, "a reused Inflater gives another result");
    if let Ok(n) = got {
        assert_eq!(out2[..n], out[..n]);
    }
}
