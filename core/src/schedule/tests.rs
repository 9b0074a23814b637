extern crate std;

use super::*;
use serde_json::Value;
use std::string::ToString;
use std::vec::Vec;

fn vectors() -> Value {
    crate::vectors::load("port_schedule.json")
}

/// Parses a vector's `unix_time` (an integer or a decimal like `2000000000.5`)
/// exactly, without going through a float.
fn unix_time(v: &Value) -> UnixTime {
    let text = v.to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut ms: i64 = int.parse::<i64>().unwrap() * 1000;
    let mut digits = frac.chars();
    for scale in [100, 10, 1] {
        if let Some(d) = digits.next() {
            ms += i64::from(d.to_digit(10).unwrap()) * scale;
        }
    }
    UnixTime::from_millis(ms)
}

#[test]
fn constants_match_vectors() {
    let c = &vectors()["constants"];
    assert_eq!(c["window"], WINDOW);
    assert_eq!(c["max_clock_error"], MAX_CLOCK_ERROR);
    assert_eq!(c["num_ports"], NUM_PORTS);
    assert_eq!(c["base_port"], BASE_PORT);
    assert_eq!(c["port_range"], PORT_RANGE);
    assert_eq!(c["large_prime"], LARGE_PRIME);
}

#[test]
fn mt19937_matches_cpython() {
    let v = vectors();
    let cases = v["mt19937"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let seed: u64 = case["seed"].as_str().unwrap().parse().unwrap();
        let mut rng = Mt19937::from_seed(seed);
        let raw: Vec<u64> = (0..8).map(|_| u64::from(rng.getrandbits(32))).collect();
        let want: Vec<u64> = case["getrandbits32_first8"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(raw, want, "getrandbits(32), seed {seed}");

        let mut rng = Mt19937::from_seed(seed);
        let got: Vec<u64> = (0..8).map(|_| u64::from(rng.randint(0, 19_999))).collect();
        let want: Vec<u64> = case["randint_0_19999_first8"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "randint(0, 19999), seed {seed}");
    }
}

#[test]
fn every_schedule_vector() {
    let v = vectors();
    let cases = v["schedule"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let t = unix_time(&case["unix_time"]);
        let b = bucket(t);
        assert_eq!(b, case["bucket"].as_i64().unwrap(), "bucket at {t}");
        assert_eq!(
            u64::from(boundary(b)),
            case["boundary"].as_u64().unwrap(),
            "boundary at {t}"
        );
        let want: Vec<u16> = case["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap() as u16)
            .collect();
        assert_eq!(ports(boundary(b)).as_slice(), &want[..], "ports at {t}");
        assert_eq!(
            rendezvous_time(b),
            case["rendezvous_time"].as_i64().unwrap(),
            "rendezvous at {t}"
        );
    }
}

#[test]
fn bucket_floors_before_the_epoch_offset() {
    assert_eq!(bucket(UnixTime::from_secs(0)), -1);
    assert_eq!(bucket(UnixTime::from_millis(19_999)), -1);
    assert_eq!(bucket(UnixTime::from_secs(20)), 0);
    assert_eq!(bucket(UnixTime::from_millis(61_999)), 0);
    assert_eq!(bucket(UnixTime::from_secs(62)), 1);
    assert_eq!(bucket(UnixTime::from_secs(-23)), -2);
    assert_eq!(bucket(UnixTime::from_secs(-22)), -1);
    assert_eq!(bucket_start(0), UnixTime::from_secs(20));
    assert_eq!(bucket_start(-1), UnixTime::from_secs(-22));
}

#[test]
fn boundary_is_python_modulo() {
    assert_eq!(boundary(0), 0);
    assert_eq!(boundary(1), 2_654_435_761);
    // -1 × p mod (2³² − 1) in Python is non-negative.
    assert_eq!(boundary(-1), 1_640_531_534);
    // A multiple of the modulus maps to 0, not to 2³² − 1.
    assert_eq!(boundary(0xFFFF_FFFF), 0);
    assert!(u64::from(boundary(i64::MAX)) < BOUNDARY_MODULUS);
    assert!(u64::from(boundary(i64::MIN)) < BOUNDARY_MODULUS);
}

#[test]
fn reference_start_skips_a_close_rendezvous() {
    // 1 s before the rendezvous at 20: too close, the reference takes the next.
    let r = reference_start(UnixTime::from_secs(19));
    assert_eq!(
        r,
        ReferenceStart {
            bucket: 0,
            rendezvous: 62
        }
    );
    // Exactly 10 s before is far enough.
    let r = reference_start(UnixTime::from_secs(52));
    assert_eq!(
        r,
        ReferenceStart {
            bucket: 0,
            rendezvous: 62
        }
    );
    let r = reference_start(UnixTime::from_millis(52_001));
    assert_eq!(
        r,
        ReferenceStart {
            bucket: 1,
            rendezvous: 104
        }
    );
    let r = reference_start(UnixTime::from_secs(20));
    assert_eq!(
        r,
        ReferenceStart {
            bucket: 0,
            rendezvous: 62
        }
    );
}

use crate::vectors::XorShift;

#[test]
fn ports_are_sorted_distinct_in_range_and_deterministic() {
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    for i in 0..400u32 {
        let b = if i < 200 {
            i64::from(i) - 100
        } else {
            (rng.next() >> 20) as i64 - (1 << 42)
        };
        let p = BucketPorts::new(b);
        let s = p.ports.as_slice();
        for w in s.windows(2) {
            assert!(w[0] > w[1], "bucket {b}: not strictly descending: {s:?}");
        }
        for &port in s {
            assert!(
                (BASE_PORT..BASE_PORT + PORT_RANGE).contains(&port),
                "bucket {b}: {port}"
            );
        }
        assert_eq!(p, BucketPorts::new(b), "bucket {b} is not deterministic");
    }
}

#[test]
fn candidates_cover_any_skew_within_the_bound() {
    // Two clocks that differ by at most the bound always share a candidate.
    let mut rng = XorShift(42);
    for bound_s in [0i64, 1, 5, 19, 20, 30, 62] {
        let bound = bound_s * 1000;
        for _ in 0..2000 {
            let t = UnixTime::from_millis(1_700_000_000_000 + (rng.next() % 10_000_000) as i64);
            let skew = (rng.next() % (2 * bound as u64 + 1)) as i64 - bound;
            let mine = candidate_buckets(t, bound).unwrap();
            let theirs = candidate_buckets(t.offset_millis(skew), bound).unwrap();
            assert!(mine.clone().count() <= MAX_CANDIDATES);
            assert!(
                mine.start() <= theirs.end() && theirs.start() <= mine.end(),
                "t={t} skew={skew}ms: {mine:?} vs {theirs:?}"
            );
            // Each side's own bucket is a candidate of the other.
            assert!(theirs.contains(&bucket(t)));
        }
    }
}

#[test]
fn candidates_at_bucket_edges() {
    // t = 62 s starts bucket 1; with a 20 s bound the window reaches back into 0.
    let c = candidate_buckets(UnixTime::from_secs(62), 20_000).unwrap();
    assert_eq!(c, 0..=1);
    // Middle of bucket 1 (62..104): 83 ± 20 stays inside it.
    let c = candidate_buckets(UnixTime::from_secs(83), 20_000).unwrap();
    assert_eq!(c, 1..=1);
    let c = candidate_buckets(UnixTime::from_millis(83_999), 20_000).unwrap();
    assert_eq!(c, 1..=1);
    let c = candidate_buckets(UnixTime::from_secs(84), 20_000).unwrap();
    assert_eq!(c, 1..=2);
    // The widest bound touches at most four buckets.
    let c = candidate_buckets(UnixTime::from_millis(62_500), 62_999).unwrap();
    assert_eq!(c, -1..=2);
    assert_eq!(
        candidate_buckets(UnixTime::from_secs(83), 63_000),
        Err(SkewError::OutOfRange)
    );
    assert_eq!(
        candidate_buckets(UnixTime::from_secs(83), -1),
        Err(SkewError::OutOfRange)
    );
}

#[test]
fn unix_time_display() {
    assert_eq!(
        std::format!("{}", UnixTime::from_secs(1_700_000_000)),
        "1700000000"
    );
    assert_eq!(
        std::format!("{}", UnixTime::from_millis(2_000_000_000_500)),
        "2000000000.5"
    );
    assert_eq!(std::format!("{}", UnixTime::from_millis(1_250)), "1.25");
    assert_eq!(std::format!("{}", UnixTime::from_secs(-5)), "-5");
    assert_eq!(std::format!("{}", UnixTime::from_millis(-1)), "-0.001");
}

/// Found by the `punch_ops` fuzz target: `rendezvous × 1000` overflowed
/// for a clock within a minute of the `i64` range's ends (a huge
/// `--clock-offset`); it saturates now, like the rest of the schedule.
#[test]
fn reference_start_saturates_at_the_ends_of_time() {
    for ms in [i64::MIN, i64::MIN + 1, i64::MAX - 61_000, i64::MAX] {
        let t = UnixTime::from_millis(ms);
        let r = reference_start(t);
        assert!(r.bucket == bucket(t) || r.bucket == bucket(t) + 1);
        assert!(
            r.rendezvous.saturating_mul(1000) >= ms,
            "rendezvous before {ms}"
        );
    }
}
