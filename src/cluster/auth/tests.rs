//! Unit and property tests of `cluster::auth`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;
const NONCE: &str = "00112233445566778899aabbccddeeff";
const BODY: &[u8] = br#"{"name":"node-1"}"#;

fn secret() -> ClusterSecret {
    ClusterSecret::from_text(SECRET).unwrap()
}

fn headers<'a>(ts: &'a str, nonce: &'a str, sig: &'a str) -> ReceivedHeaders<'a> {
    ReceivedHeaders {
        node: Some("node-1"),
        timestamp: Some(ts),
        nonce: Some(nonce),
        signature: Some(sig),
    }
}

#[test]
fn golden_signatures() {
    // Computed independently with Python's hmac/hashlib.
    assert_eq!(
        canonical_string("POST", "/api/cluster/heartbeat", NOW, NONCE, BODY),
        "AIRCLASS-HMAC-SHA256\nPOST\n/api/cluster/heartbeat\n1700000000\n\
         00112233445566778899aabbccddeeff\n\
         008911d80a5acce17c499519a6534e10e07b585b68b1461a26de6c237fad8815"
    );
    assert_eq!(
        sign(
            &secret(),
            "POST",
            "/api/cluster/heartbeat",
            NOW,
            NONCE,
            BODY
        ),
        "5bf4782a460a12e88e5f47defb0c74e79a1b6fe3b4aa348ddf3765da8dd4e53a"
    );
    assert_eq!(
        sign(
            &secret(),
            "POST",
            "/api/cluster/register",
            NOW,
            "ffeeddccbbaa99887766554433221100",
            b""
        ),
        "4fa40288e0b84b1f190ed9878c7c1593f98ecb51781332b27be54bd78416fc3c"
    );
}

#[test]
fn secret_rules() {
    assert_eq!(
        ClusterSecret::new(vec![1; 31]).unwrap_err(),
        SecretError::TooShort { len: 31 }
    );
    assert!(ClusterSecret::new(vec![1; 32]).is_ok());
    // The trailing newline of a file does not count.
    assert!(ClusterSecret::from_text(&format!("{}\n", "x".repeat(31))).is_err());
    let dbg = format!("{:?}", secret());
    assert!(dbg.contains("[redacted]") && !dbg.contains("0123"), "{dbg}");
    let v = Verifier::new(secret());
    assert!(!format!("{v:?}").contains("0123"));
}

#[test]
fn round_trip_and_replay() {
    let mut rng = StdRng::seed_from_u64(1);
    let h = sign_request(
        &secret(),
        "node-1",
        "POST",
        "/api/cluster/heartbeat",
        BODY,
        NOW,
        &mut rng,
    );
    assert_eq!(h.nonce.len(), 32);
    assert_eq!(h.pairs()[0], (HEADER_NODE, "node-1"));
    let mut v = Verifier::new(secret());
    let rh = headers(&h.timestamp, &h.nonce, &h.signature);
    assert_eq!(
        v.verify("POST", "/api/cluster/heartbeat", &rh, BODY, NOW + 3),
        Ok(())
    );
    assert_eq!(v.cached_nonces(), 1);
    assert_eq!(
        v.verify("POST", "/api/cluster/heartbeat", &rh, BODY, NOW + 4),
        Err(AuthError::Replay)
    );
    // A second request with a fresh nonce is fine.
    let h2 = sign_request(
        &secret(),
        "node-1",
        "POST",
        "/api/cluster/heartbeat",
        BODY,
        NOW,
        &mut rng,
    );
    assert_ne!(h2.nonce, h.nonce);
    let rh2 = headers(&h2.timestamp, &h2.nonce, &h2.signature);
    assert_eq!(
        v.verify("POST", "/api/cluster/heartbeat", &rh2, BODY, NOW),
        Ok(())
    );
}

#[test]
fn every_tamper_fails_and_records_nothing() {
    let sig = sign(
        &secret(),
        "POST",
        "/api/cluster/heartbeat",
        NOW,
        NONCE,
        BODY,
    );
    let ts = NOW.to_string();
    let other_nonce = "00112233445566778899aabbccddeef0";
    let mut v = Verifier::new(secret());
    let cases: Vec<(&str, &str, ReceivedHeaders<'_>, &[u8])> = vec![
        (
            "GET",
            "/api/cluster/heartbeat",
            headers(&ts, NONCE, &sig),
            BODY,
        ),
        (
            "POST",
            "/api/cluster/register",
            headers(&ts, NONCE, &sig),
            BODY,
        ),
        (
            "POST",
            "/api/cluster/heartbeat",
            headers("1700000001", NONCE, &sig),
            BODY,
        ),
        (
            "POST",
            "/api/cluster/heartbeat",
            headers(&ts, other_nonce, &sig),
            BODY,
        ),
        (
            "POST",
            "/api/cluster/heartbeat",
            headers(&ts, NONCE, &sig),
            br#"{"name":"node-2"}"#,
        ),
    ];
    for (m, p, h, b) in cases {
        assert_eq!(
            v.verify(m, p, &h, b, NOW),
            Err(AuthError::BadSignature),
            "{m} {p} {h:?}"
        );
    }
    let mut flipped = sig.clone().into_bytes();
    flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let h = headers(&ts, NONCE, &flipped);
    assert_eq!(
        v.verify("POST", "/api/cluster/heartbeat", &h, BODY, NOW),
        Err(AuthError::BadSignature)
    );
    let wrong = sign(
        &ClusterSecret::from_text(&"y".repeat(32)).unwrap(),
        "POST",
        "/api/cluster/heartbeat",
        NOW,
        NONCE,
        BODY,
    );
    let h = headers(&ts, NONCE, &wrong);
    assert_eq!(
        v.verify("POST", "/api/cluster/heartbeat", &h, BODY, NOW),
        Err(AuthError::BadSignature)
    );
    assert_eq!(
        v.cached_nonces(),
        0,
        "failed requests must not fill the replay cache"
    );
    // The untampered request still passes (its nonce was never recorded).
    let h = headers(&ts, NONCE, &sig);
    assert_eq!(
        v.verify("POST", "/api/cluster/heartbeat", &h, BODY, NOW),
        Ok(())
    );
}

#[test]
fn missing_and_malformed_headers() {
    let sig = sign(&secret(), "POST", "/p", NOW, NONCE, b"");
    let ts = NOW.to_string();
    let mut v = Verifier::new(secret());
    let full = headers(&ts, NONCE, &sig);
    let check = |v: &mut Verifier, h: ReceivedHeaders<'_>| v.verify("POST", "/p", &h, b"", NOW);
    assert_eq!(
        check(&mut v, ReceivedHeaders { node: None, ..full }),
        Err(AuthError::Missing(HEADER_NODE))
    );
    assert_eq!(
        check(
            &mut v,
            ReceivedHeaders {
                node: Some(""),
                ..full
            }
        ),
        Err(AuthError::Missing(HEADER_NODE))
    );
    assert_eq!(
        check(
            &mut v,
            ReceivedHeaders {
                timestamp: None,
                ..full
            }
        ),
        Err(AuthError::Missing(HEADER_TIMESTAMP))
    );
    assert_eq!(
        check(
            &mut v,
            ReceivedHeaders {
                nonce: None,
                ..full
            }
        ),
        Err(AuthError::Missing(HEADER_NONCE))
    );
    assert_eq!(
        check(
            &mut v,
            ReceivedHeaders {
                signature: None,
                ..full
            }
        ),
        Err(AuthError::Missing(HEADER_SIGNATURE))
    );
    for bad_ts in [
        "",
        "-1",
        "+5",
        "1.5",
        "123456789012345678901",
        "99999999999999999999",
    ] {
        let got = check(
            &mut v,
            ReceivedHeaders {
                timestamp: Some(bad_ts),
                ..full
            },
        );
        assert!(
            matches!(
                got,
                Err(AuthError::BadFormat {
                    header: HEADER_TIMESTAMP,
                    ..
                })
            ),
            "{bad_ts:?}: {got:?}"
        );
    }
    for bad_nonce in [
        "",
        "0011",
        "00112233445566778899AABBCCDDEEFF",
        "g0112233445566778899aabbccddeeff",
    ] {
        let got = check(
            &mut v,
            ReceivedHeaders {
                nonce: Some(bad_nonce),
                ..full
            },
        );
        assert!(
            matches!(
                got,
                Err(AuthError::BadFormat {
                    header: HEADER_NONCE,
                    ..
                })
            ),
            "{bad_nonce:?}"
        );
    }
    for bad_sig in ["", "zz", &sig[..62]] {
        let got = check(
            &mut v,
            ReceivedHeaders {
                signature: Some(bad_sig),
                ..full
            },
        );
        assert!(
            matches!(
                got,
                Err(AuthError::BadFormat {
                    header: HEADER_SIGNATURE,
                    ..
                })
            ),
            "{bad_sig:?}"
        );
    }
    // Lowercase hex only (docs/protocol.md §2): an upper- or mixed-case spelling of the right
    // signature is refused as malformed, before any comparison.
    let mixed: String = sig
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    for other_case in [sig.to_uppercase(), mixed] {
        assert_ne!(other_case, sig, "the test signature has letters");
        let got = check(
            &mut v,
            ReceivedHeaders {
                signature: Some(&other_case),
                ..full
            },
        );
        assert!(
            matches!(
                got,
                Err(AuthError::BadFormat {
                    header: HEADER_SIGNATURE,
                    ..
                })
            ),
            "{other_case:?}: {got:?}"
        );
    }
    assert_eq!(
        check(
            &mut v,
            ReceivedHeaders {
                signature: Some(&sig),
                ..full
            }
        ),
        Ok(())
    );
    assert_eq!(
        AuthError::Missing(HEADER_NODE).code(),
        ErrorCode::BadSignature
    );
}

#[test]
fn skew_both_ways() {
    let mut v = Verifier::new(secret());
    let mut at = |ts: u64, now: u64, nonce: &str| {
        let sig = sign(&secret(), "POST", "/p", ts, nonce, b"");
        let ts = ts.to_string();
        v.verify("POST", "/p", &headers(&ts, nonce, &sig), b"", now)
    };
    assert_eq!(
        at(NOW - 30, NOW, "0000000000000000000000000000000a"),
        Ok(())
    );
    assert_eq!(
        at(NOW + 30, NOW, "0000000000000000000000000000000b"),
        Ok(())
    );
    let e = at(NOW - 31, NOW, "0000000000000000000000000000000c").unwrap_err();
    assert_eq!(
        (e.clone(), e.code()),
        (
            AuthError::Skew {
                by: -31,
                window: 30
            },
            ErrorCode::Skew
        )
    );
    assert_eq!(
        at(NOW + 31, NOW, "0000000000000000000000000000000d"),
        Err(AuthError::Skew { by: 31, window: 30 })
    );
    assert_eq!(
        at(0, u64::MAX, "0000000000000000000000000000000e"),
        Err(AuthError::Skew {
            by: i64::MIN,
            window: 30
        })
    );
    assert_eq!(v.cached_nonces(), 2);
}

#[test]
fn replay_window_expiry_reclaims_memory() {
    let mut v = Verifier::with_limits(secret(), 30, 3);
    let mut rng = StdRng::seed_from_u64(9);
    let mut sent = Vec::new();
    for _ in 0..3 {
        let h = sign_request(&secret(), "node-1", "POST", "/p", b"x", NOW, &mut rng);
        let rh = headers(&h.timestamp, &h.nonce, &h.signature);
        assert_eq!(v.verify("POST", "/p", &rh, b"x", NOW), Ok(()));
        sent.push(h);
    }
    // Full of unexpired nonces: refuse rather than forget.
    let h = sign_request(&secret(), "node-1", "POST", "/p", b"x", NOW + 30, &mut rng);
    let rh = headers(&h.timestamp, &h.nonce, &h.signature);
    assert_eq!(
        v.verify("POST", "/p", &rh, b"x", NOW + 30),
        Err(AuthError::CacheFull { max: 3 })
    );
    assert_eq!(AuthError::CacheFull { max: 3 }.code(), ErrorCode::Busy);
    // A replay at the very edge of the window is still caught.
    let old = headers(&sent[0].timestamp, &sent[0].nonce, &sent[0].signature);
    assert_eq!(
        v.verify("POST", "/p", &old, b"x", NOW + 30),
        Err(AuthError::Replay)
    );
    // One second later the old nonces expire; the replay is refused by skew instead.
    let h = sign_request(&secret(), "node-1", "POST", "/p", b"x", NOW + 31, &mut rng);
    let rh = headers(&h.timestamp, &h.nonce, &h.signature);
    assert_eq!(v.verify("POST", "/p", &rh, b"x", NOW + 31), Ok(()));
    assert_eq!(v.cached_nonces(), 1, "expired nonces reclaimed");
    assert!(matches!(
        v.verify("POST", "/p", &old, b"x", NOW + 31),
        Err(AuthError::Skew { .. })
    ));
    v.evict(NOW + 62);
    assert_eq!(v.cached_nonces(), 0);
}

proptest! {
    #[test]
    fn round_trip_any(method in "[A-Z]{3,7}", path in "/[a-z/]{0,30}", body in proptest::collection::vec(any::<u8>(), 0..200),
                      skew in -30i64..=30, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let ts = NOW.saturating_add_signed(skew);
        let h = sign_request(&secret(), "node-1", &method, &path, &body, ts, &mut rng);
        let mut v = Verifier::new(secret());
        let rh = headers(&h.timestamp, &h.nonce, &h.signature);
        prop_assert_eq!(v.verify(&method, &path, &rh, &body, NOW), Ok(()));
        prop_assert_eq!(v.verify(&method, &path, &rh, &body, NOW), Err(AuthError::Replay));
    }

    #[test]
    fn any_body_or_signature_change_is_refused(body in proptest::collection::vec(any::<u8>(), 1..200),
                                               idx: usize, bit in 0u8..8, sig_idx in 0usize..64) {
        let sig = sign(&secret(), "POST", "/p", NOW, NONCE, &body);
        let ts = NOW.to_string();
        let mut v = Verifier::new(secret());
        let mut tampered = body.clone();
        let i = idx % tampered.len();
        tampered[i] ^= 1 << bit;
        prop_assert_eq!(v.verify("POST", "/p", &headers(&ts, NONCE, &sig), &tampered, NOW), Err(AuthError::BadSignature));
        let mut s = sig.clone().into_bytes();
        s[sig_idx] = if s[sig_idx] == b'f' { b'e' } else { b'f' };
        let s = String::from_utf8(s).unwrap();
        prop_assert_eq!(v.verify("POST", "/p", &headers(&ts, NONCE, &s), &body, NOW), Err(AuthError::BadSignature));
        prop_assert_eq!(v.cached_nonces(), 0);
        prop_assert_eq!(v.verify("POST", "/p", &headers(&ts, NONCE, &sig), &body, NOW), Ok(()));
    }

    /// Whenever a replay arrives, it is refused (as a replay or, once expired, as skew).
    #[test]
    fn replays_never_pass(skew in -30i64..=30, later in 0u64..120, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let ts = NOW.saturating_add_signed(skew);
        let h = sign_request(&secret(), "n", "POST", "/p", b"", ts, &mut rng);
        let mut v = Verifier::new(secret());
        let rh = headers(&h.timestamp, &h.nonce, &h.signature);
        prop_assert_eq!(v.verify("POST", "/p", &rh, b"", NOW), Ok(()));
        let again = v.verify("POST", "/p", &rh, b"", NOW + later);
        prop_assert!(matches!(again, Err(AuthError::Replay) | Err(AuthError::Skew { .. })), "{:?}", again);
    }
}
