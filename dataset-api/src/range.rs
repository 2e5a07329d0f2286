//! `Range` and conditional request headers, decided without I/O (RFC 9110 §13–14).

use std::ops::Range;

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeReq {
    /// No usable range: send the whole representation (200). Covers an absent header,
    /// one that is not `bytes=` or does not parse, and several ranges at once, which a
    /// server may answer with the whole representation.
    Full,
    /// One satisfiable range, half-open, within `0..len` and not empty (206).
    Partial(Range<u64>),
    /// A well-formed range no byte of the representation satisfies (416).
    Unsatisfiable,
}

/// Longest `Range` header value looked at; longer ones are ignored (200).
const MAX_HEADER: usize = 256;

/// Decides a `Range` header value against a representation of `len` bytes.
pub fn parse(header: Option<&str>, len: u64) -> RangeReq {
    let Some(h) = header else {
        return RangeReq::Full;
    };
    if h.len() > MAX_HEADER {
        return RangeReq::Full;
    }
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeReq::Full;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeReq::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        // Digits beyond u64 mean "past any end": saturate.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    match (a.is_empty(), b.is_empty()) {
        // bytes=-n: the last n bytes (all of them when n exceeds the length).
        (true, false) => match num(b) {
            Some(0) => RangeReq::Unsatisfiable,
            Some(_) if len == 0 => RangeReq::Unsatisfiable,
            Some(n) => RangeReq::Partial(len.saturating_sub(n)..len),
            None => RangeReq::Full,
        },
        // bytes=a-: from a to the end.
        (false, true) => match num(a) {
            Some(s) if s >= len => RangeReq::Unsatisfiable,
            Some(s) => RangeReq::Partial(s..len),
            None => RangeReq::Full,
        },
        // bytes=a-b, inclusive; b past the end is cut at the end.
        (false, false) => match (num(a), num(b)) {
            (Some(s), Some(e)) if s > e => RangeReq::Full,
            (Some(s), Some(_)) if s >= len => RangeReq::Unsatisfiable,
            (Some(s), Some(e)) => RangeReq::Partial(s..e.saturating_add(1).min(len)),
            _ => RangeReq::Full,
        },
        (true, true) => RangeReq::Full,
    }
}

/// Whether an `If-None-Match` value matches the strong entity tag `etag` (quoted). Weak
/// comparison, as RFC 9110 §13.1.2 asks for this header.
pub fn none_match(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|t| {
        t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag.strip_prefix("W/").unwrap_or(etag)
    })
}

/// Whether an `If-Range` value lets the range through: only an exact strong match of
/// `etag` or a date no earlier than `last_modified` does (RFC 9110 §13.1.5).
pub fn if_range_holds(header: &str, etag: &str, last_modified: std::time::SystemTime) -> bool {
    let h = header.trim();
    if h.starts_with('"') {
        return h == etag;
    }
    if h.starts_with("W/") {
        return false;
    }
    httpdate::parse_http_date(h).is_ok_and(|d| d >= last_modified)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{RangeReq::*, *};

    #[test]
    fn the_forms_real_clients_send() {
        assert_eq!(parse(None, 10), Full);
        assert_eq!(parse(Some("bytes=0-0"), 10), Partial(0..1));
        assert_eq!(parse(Some("bytes=9-9"), 10), Partial(9..10));
        assert_eq!(parse(Some("bytes=2-"), 10), Partial(2..10));
        assert_eq!(parse(Some("bytes=-3"), 10), Partial(7..10));
        assert_eq!(parse(Some("bytes=-30"), 10), Partial(0..10));
        assert_eq!(parse(Some("bytes=5-100"), 10), Partial(5..10));
        assert_eq!(parse(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse(Some("bytes=10-20"), 10), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-5"), 0), Unsatisfiable);
        assert_eq!(
            parse(Some("bytes=99999999999999999999999-"), 10),
            Unsatisfiable
        );
        assert_eq!(
            parse(Some("bytes=0-99999999999999999999999"), 10),
            Partial(0..10)
        );
        // Ignored: not bytes, bad syntax, several ranges, reversed.
        for h in [
            "items=0-1",
            "bytes=a-b",
            "bytes=0-1,3-4",
            "bytes=5-2",
            "bytes=-",
            "bytes=+1-2",
            "bytes= 1 - x",
        ] {
            assert_eq!(parse(Some(h), 10), Full, "{h}");
        }
    }

    #[test]
    fn conditions() {
        let tag = "\"abc\"";
        assert!(none_match("\"abc\"", tag));
        assert!(none_match("\"x\", W/\"abc\"", tag));
        assert!(none_match("*", tag));
        assert!(!none_match("\"abd\"", tag));
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert!(if_range_holds("\"abc\"", tag, t));
        assert!(!if_range_holds("W/\"abc\"", tag, t));
        assert!(if_range_holds(&httpdate::fmt_http_date(t), tag, t));
        assert!(!if_range_holds(
            &httpdate::fmt_http_date(t - std::time::Duration::from_secs(5)),
            tag,
            t
        ));
        assert!(!if_range_holds("garbage", tag, t));
    }

    proptest! {
        #[test]
        fn any_header_gives_a_range_inside_the_file(h in ".{0,40}", len in 0u64..1000) {
            if let Partial(r) = parse(Some(&h), len) {
                prop_assert!(r.start < r.end && r.end <= len);
            }
        }

        #[test]
        fn closed_ranges_select_exactly_their_bytes(a in 0u64..200, n in 0u64..200, len in 0u64..150) {
            let b = a + n;
            match parse(Some(&format!("bytes={a}-{b}")), len) {
                Partial(r) => prop_assert_eq!(r, a..(b + 1).min(len)),
                Unsatisfiable => prop_assert!(a >= len),
                Full => prop_assert!(false, "a well-formed range was ignored"),
            }
        }
    }
}
