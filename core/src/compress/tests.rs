extern crate std;

use super::*;
use crate::vectors::{XorShift, load, unhex};
use std::vec;
use std::vec::Vec;

#[test]
fn inflates_cpython_streams() {
    let v = load("compat_frames.json");
    let mut seen = 0;
    for case in v["frames"].as_array().unwrap() {
        if case["kind"] != "C" {
            continue;
        }
        let frame = unhex(case["frame_hex"].as_str().unwrap());
        let len = case["payload_len"].as_u64().unwrap() as usize;
        let mut out = vec![0u8; len];
        let n = Inflater::new().inflate(&frame[16..], &mut out).unwrap();
        assert_eq!(n, len);
        let md5 = unhex(case["payload_md5"].as_str().unwrap());
        assert_eq!(&md5::compute(&out).0[..], &md5[..]);
        seen += 1;
    }
    assert!(seen >= 2);
}

#[test]
fn refuses_to_inflate_past_the_declared_length() {
    // CPython's stream for 40000 zero bytes, declared as only 39999 or 100.
    let v = load("compat_frames.json");
    let case = v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["payload_len"] == 40_000)
        .unwrap();
    let frame = unhex(case["frame_hex"].as_str().unwrap());
    let mut inflater = Inflater::new();
    for declared in [0usize, 1, 100, 39_999] {
        let mut out = vec![0u8; declared];
        assert_eq!(
            inflater.inflate(&frame[16..], &mut out),
            Err(InflateError::TooLong)
        );
    }
    // The same state then inflates the honest length fine.
    let mut out = vec![0u8; 40_000];
    assert_eq!(inflater.inflate(&frame[16..], &mut out), Ok(40_000));
}

#[test]
fn rejects_truncated_and_corrupt_streams() {
    let v = load("compat_frames.json");
    let case = v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["payload_len"] == 6000)
        .unwrap();
    let frame = unhex(case["frame_hex"].as_str().unwrap());
    let stream = &frame[16..];
    let mut inflater = Inflater::new();
    let mut out = vec![0u8; 6000];
    for cut in 0..stream.len() {
        let r = inflater.inflate(&stream[..cut], &mut out);
        assert!(r.is_err(), "prefix of {cut} bytes accepted");
    }
    // A wrong Adler-32 trailer.
    let mut bad = stream.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(inflater.inflate(&bad, &mut out), Err(InflateError::Corrupt));
    // Not zlib at all.
    assert_eq!(
        inflater.inflate(b"hello world", &mut out),
        Err(InflateError::Corrupt)
    );
}

#[test]
fn random_streams_never_panic() {
    let mut rng = XorShift(99);
    let mut inflater = Inflater::new();
    let mut out = vec![0u8; 4096];
    for _ in 0..5000 {
        let len = rng.below(200) as usize;
        let mut s: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if s.len() >= 2 {
            // A valid zlib header half the time, so the deflate decoder runs.
            if rng.below(2) == 0 {
                s[0] = 0x78;
                s[1] = 0x9c;
            }
        }
        let cap = rng.below(4096) as usize;
        let _ = inflater.inflate(&s, &mut out[..cap]);
    }
}

#[cfg(feature = "deflate")]
mod with_deflate {
    use super::*;

    #[test]
    fn min_gain_rule() {
        let mut d = Deflater::new(DEFAULT_LEVEL);
        let mut out = vec![0u8; 50_000];
        // 100 bytes or fewer: never compressed, however compressible.
        assert_eq!(d.compress_worthwhile(&[b'a'; 100], &mut out), None);
        // 101 zero bytes compress to ~11, saving more than 100? 101-11 = 90: no.
        assert_eq!(d.compress_worthwhile(&[0u8; 101], &mut out), None);
        // 300 zero bytes: saves well over 100.
        let n = d.compress_worthwhile(&[0u8; 300], &mut out).unwrap();
        assert!(n < 200);
        // Random bytes do not compress.
        let mut rng = XorShift(3);
        let noise: Vec<u8> = (0..5000).map(|_| rng.next() as u8).collect();
        assert_eq!(d.compress_worthwhile(&noise, &mut out), None);
    }

    #[test]
    fn round_trip_through_our_deflate() {
        let mut d = Deflater::new(DEFAULT_LEVEL);
        let mut inf = Inflater::new();
        let mut rng = XorShift(11);
        for _ in 0..200 {
            let len = 101 + rng.below(40_000 - 101) as usize;
            let alphabet = 1 + rng.below(8) as u8;
            let payload: Vec<u8> = (0..len)
                .map(|_| b'a' + (rng.next() as u8 % alphabet))
                .collect();
            let mut stream = vec![0u8; len];
            if let Some(n) = d.compress_worthwhile(&payload, &mut stream) {
                assert!(n < len - MIN_GAIN);
                let mut out = vec![0u8; len];
                assert_eq!(inf.inflate(&stream[..n], &mut out), Ok(len));
                assert_eq!(out, payload);
            }
        }
    }

    #[test]
    fn stops_when_the_output_would_not_pay() {
        // An output buffer too small for the stream is "not worth it", not an error.
        let mut d = Deflater::new(DEFAULT_LEVEL);
        let payload = b"abcdefgh".repeat(100);
        let mut tiny = [0u8; 4];
        assert_eq!(d.compress_worthwhile(&payload, &mut tiny), None);
    }
}
