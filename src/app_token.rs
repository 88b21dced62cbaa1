//! The application token (AirClass web backend → join endpoint): stored only as its SHA-256
//! (lowercase hex, what `airclass-node hash-token` prints and `secrets init` writes), presented
//! as `Authorization: Bearer <token>`, checked in constant time. Pure; used by `config::keygen`,
//! `commands` and main's join endpoint alike.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The stored hash is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("application token hash must be 64 hex digits (SHA-256)")]
pub struct BadTokenHash;

/// SHA-256 of an application token, lowercase hex.
pub fn token_sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token part of an `Authorization: Bearer <token>` value (scheme case-insensitive).
pub fn parse_bearer(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Checks application tokens against their stored SHA-256.
#[derive(Clone)]
pub struct AppTokenCheck {
    hash: [u8; 32],
}

impl AppTokenCheck {
    /// From the hash file's text: 64 hex digits, surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Self, BadTokenHash> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut hash).map_err(|_| BadTokenHash)?;
        Ok(AppTokenCheck { hash })
    }

    /// Does `bearer` hash to the stored value? Constant time in the hash comparison.
    pub fn check(&self, bearer: &str) -> bool {
        let got: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
        bool::from(got.ct_eq(&self.hash))
    }
}

impl fmt::Debug for AppTokenCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppTokenCheck([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_hash() {
        assert_eq!(
            token_sha256_hex("example-app-token"),
            "8f63c572ceb2389d8f647a70943ad471000523aeec8c843c18385ccf34692d55"
        );
    }

    #[test]
    fn check_and_bearer() {
        let check =
            AppTokenCheck::from_hex(&format!("  {}\n", token_sha256_hex("s3cret-token"))).unwrap();
        assert!(check.check("s3cret-token"));
        assert!(!check.check("s3cret-toke"));
        assert!(!check.check(""));
        assert!(!format!("{check:?}").contains(&token_sha256_hex("s3cret-token")[..8]));
        assert!(AppTokenCheck::from_hex("abcd").is_err());
        assert!(AppTokenCheck::from_hex(&"z".repeat(64)).is_err());
        assert_eq!(parse_bearer("Bearer abc"), Some("abc"));
        assert_eq!(parse_bearer("bearer  abc "), Some("abc"));
        assert_eq!(parse_bearer("Basic abc"), None);
        assert_eq!(parse_bearer("Bearer"), None);
        assert_eq!(parse_bearer("Bearer   "), None);
    }
}
