//! Authentication of control-API requests. Pure: time (`now_unix`) and randomness (`rng`) are
//! parameters; no I/O.
//!
//! Cluster requests (sub → main) are signed with HMAC-SHA256 under the shared cluster secret over
//! the canonical string
//!
//! ```text
//! AIRCLASS-HMAC-SHA256\n{METHOD}\n{PATH}\n{TIMESTAMP}\n{NONCE}\n{hex(SHA-256(body))}
//! ```
//!
//! (no trailing newline; METHOD as sent, e.g. `POST`; PATH the request target as sent, with its
//! query if any; TIMESTAMP decimal unix seconds; NONCE 32 lowercase hex digits; hex lowercase).
//! [`Verifier`] checks in two steps. [`Verifier::authenticate`] (no state, no lock): headers
//! present, well formed, clock skew within the window, signature (constant time).
//! [`Verifier::admit`], once the caller knows who signed (main reads the body's name and
//! identity and asks its table): nonce not seen, the sender's budget not spent; only then is
//! the nonce recorded, so unsigned garbage cannot fill the cache.
//!
//! Replay cache ([`replay`]): a nonce is remembered until `timestamp + window`, after which the
//! skew check alone refuses the request, so forgetting it is safe. Each sender has its own
//! budget of unexpired nonces (a member of main's table 128, strangers 64 per name and 4096 in
//! all); a sender over its budget is refused (`busy`, HTTP 503) rather than forgetting a nonce
//! that could still be replayed — and only that sender: one node's flood locks nobody else out.
//!
//! Application tokens (the web backend → join endpoint) are another matter: `crate::app_token`.

pub mod replay;

use std::fmt;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::protocol::ErrorCode;
use crate::sync::lock;
pub use replay::{Limits, Sender};

pub const SCHEME: &str = "AIRCLASS-HMAC-SHA256";
pub const HEADER_TIMESTAMP: &str = "X-Airclass-Timestamp";
pub const HEADER_NONCE: &str = "X-Airclass-Nonce";
pub const HEADER_SIGNATURE: &str = "X-Airclass-Signature";
pub const HEADER_NODE: &str = "X-Airclass-Node";
/// Shortest accepted cluster secret.
pub const MIN_SECRET_LEN: usize = 32;
/// Default allowed clock difference, seconds, either way.
pub const DEFAULT_MAX_SKEW_SECS: u64 = 30;

type HmacSha256 = Hmac<Sha256>;

/// Why a cluster secret is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("cluster secret is {len} bytes; at least {MIN_SECRET_LEN} are required")]
    TooShort { len: usize },
}

/// The shared cluster secret (≥ 32 bytes). Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl ClusterSecret {
    pub fn new(bytes: Vec<u8>) -> Result<Self, SecretError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort { len: bytes.len() });
        }
        Ok(ClusterSecret(bytes))
    }

    /// From a secret file's text: surrounding whitespace (e.g. the final newline) is dropped.
    pub fn from_text(text: &str) -> Result<Self, SecretError> {
        ClusterSecret::new(text.trim().as_bytes().to_vec())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret([redacted])")
    }
}

/// The string that is signed (see the module documentation).
pub fn canonical_string(
    method: &str,
    path: &str,
    timestamp: u64,
    nonce: &str,
    body: &[u8],
) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!("{SCHEME}\n{method}\n{path}\n{timestamp}\n{nonce}\n{body_hash}")
}

fn mac_bytes(
    secret: &ClusterSecret,
    method: &str,
    path: &str,
    ts: u64,
    nonce: &str,
    body: &[u8],
) -> [u8; 32] {
    let mut mac = secret.mac();
    mac.update(canonical_string(method, path, ts, nonce, body).as_bytes());
    mac.finalize().into_bytes().into()
}

/// The request signature: lowercase hex HMAC-SHA256 of the canonical string.
pub fn sign(
    secret: &ClusterSecret,
    method: &str,
    path: &str,
    timestamp: u64,
    nonce: &str,
    body: &[u8],
) -> String {
    hex::encode(mac_bytes(secret, method, path, timestamp, nonce, body))
}

/// A fresh nonce: 16 random bytes as 32 lowercase hex digits.
pub fn new_nonce(rng: &mut impl RngCore) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The four headers a signed request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub node: String,
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
}

impl SignedHeaders {
    /// `(name, value)` pairs, ready to add to a request.
    pub fn pairs(&self) -> [(&'static str, &str); 4] {
        [
            (HEADER_NODE, &self.node),
            (HEADER_TIMESTAMP, &self.timestamp),
            (HEADER_NONCE, &self.nonce),
            (HEADER_SIGNATURE, &self.signature),
        ]
    }
}

/// Sign a request for sending: a fresh nonce from `rng`, timestamp `now_unix`.
pub fn sign_request(
    secret: &ClusterSecret,
    node: &str,
    method: &str,
    path: &str,
    body: &[u8],
    now_unix: u64,
    rng: &mut impl RngCore,
) -> SignedHeaders {
    let nonce = new_nonce(rng);
    let signature = sign(secret, method, path, now_unix, &nonce, body);
    SignedHeaders {
        node: node.to_owned(),
        timestamp: now_unix.to_string(),
        nonce,
        signature,
    }
}

/// The headers of a received request, as found (`None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceivedHeaders<'a> {
    pub node: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Why a signed request was refused. Messages never contain the secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("header {header} is malformed: {reason}")]
    BadFormat {
        header: &'static str,
        reason: &'static str,
    },
    /// `by` = request timestamp − our clock, seconds (positive: the sender is ahead).
    #[error("request timestamp is {by} s off our clock (allowed ±{window} s)")]
    Skew { by: i64, window: u64 },
    #[error("nonce already used within the replay window")]
    Replay,
    #[error("signature does not match")]
    BadSignature,
    #[error(
        "replay cache for unregistered senders is full ({max} unexpired nonces); retry shortly"
    )]
    CacheFull { max: usize },
    #[error("node {node:?} sends too fast: {max} unexpired nonces within the replay window; retry shortly")]
    SenderBusy { node: String, max: usize },
}

impl AuthError {
    /// The wire error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing(_) | AuthError::BadFormat { .. } | AuthError::BadSignature => {
                ErrorCode::BadSignature
            }
            AuthError::Skew { .. } => ErrorCode::Skew,
            AuthError::Replay => ErrorCode::Replay,
            AuthError::CacheFull { .. } | AuthError::SenderBusy { .. } => ErrorCode::Busy,
        }
    }
}

fn parse_timestamp(s: &str) -> Result<u64, AuthError> {
    let bad = |reason| AuthError::BadFormat {
        header: HEADER_TIMESTAMP,
        reason,
    };
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("decimal unix seconds expected"));
    }
    s.parse().map_err(|_| bad("out of range"))
}

fn parse_nonce(s: &str) -> Result<[u8; 16], AuthError> {
    let bad = || AuthError::BadFormat {
        header: HEADER_NONCE,
        reason: "32 lowercase hex digits expected",
    };
    if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
    Ok(out)
}

fn parse_signature(s: &str) -> Result<[u8; 32], AuthError> {
    let bad = || AuthError::BadFormat {
        header: HEADER_SIGNATURE,
        reason: "64 lowercase hex digits expected",
    };
    // lowercase only, as docs/protocol.md says: one spelling per signature
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
    Ok(out)
}

/// A request whose headers, timestamp and signature checked out; not yet admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authentic {
    nonce: [u8; 16],
    /// Until when its nonce must be remembered (unix seconds).
    expiry: u64,
}

/// Checks signed requests and remembers their nonces (see the module documentation).
#[derive(Debug)]
pub struct Verifier {
    secret: ClusterSecret,
    window: u64,
    cache: Mutex<replay::ReplayCache>,
}

impl Verifier {
    /// Default window (30 s) and budgets ([`Limits::default`]).
    pub fn new(secret: ClusterSecret) -> Self {
        Verifier::with_budgets(secret, DEFAULT_MAX_SKEW_SECS, Limits::default())
    }

    /// Every budget `max_nonces` (small caches in tests).
    pub fn with_limits(secret: ClusterSecret, max_skew_secs: u64, max_nonces: usize) -> Self {
        Verifier::with_budgets(secret, max_skew_secs, Limits::uniform(max_nonces))
    }

    pub fn with_budgets(secret: ClusterSecret, max_skew_secs: u64, limits: Limits) -> Self {
        Verifier {
            secret,
            window: max_skew_secs,
            cache: Mutex::new(replay::ReplayCache::new(limits)),
        }
    }

    /// Nonces currently remembered.
    pub fn cached_nonces(&self) -> usize {
        lock(&self.cache).len()
    }

    /// Unexpired nonces `sender` holds.
    pub fn held_by(&self, sender: Sender<'_>) -> usize {
        lock(&self.cache).held_by(sender)
    }

    /// Forget nonces whose request timestamp is now outside the window.
    pub fn evict(&self, now_unix: u64) {
        lock(&self.cache).evict(now_unix);
    }

    /// Step 1: headers, skew, signature. Changes nothing.
    pub fn authenticate(
        &self,
        method: &str,
        path: &str,
        headers: &ReceivedHeaders<'_>,
        body: &[u8],
        now_unix: u64,
    ) -> Result<Authentic, AuthError> {
        headers
            .node
            .filter(|n| !n.is_empty())
            .ok_or(AuthError::Missing(HEADER_NODE))?;
        let ts = headers
            .timestamp
            .ok_or(AuthError::Missing(HEADER_TIMESTAMP))?;
        let nonce = headers.nonce.ok_or(AuthError::Missing(HEADER_NONCE))?;
        let sig = headers
            .signature
            .ok_or(AuthError::Missing(HEADER_SIGNATURE))?;
        let ts_val = parse_timestamp(ts)?;
        let nonce_key = parse_nonce(nonce)?;
        let sig = parse_signature(sig)?;

        let by = i128::from(ts_val) - i128::from(now_unix);
        if by.unsigned_abs() > u128::from(self.window) {
            let by = i64::try_from(by).unwrap_or(if by < 0 { i64::MIN } else { i64::MAX });
            return Err(AuthError::Skew {
                by,
                window: self.window,
            });
        }

        let expected = mac_bytes(&self.secret, method, path, ts_val, nonce, body);
        if !bool::from(expected.ct_eq(&sig)) {
            return Err(AuthError::BadSignature);
        }
        Ok(Authentic {
            nonce: nonce_key,
            expiry: ts_val.saturating_add(self.window),
        })
    }

    /// Step 2: not a replay, and within `sender`'s budget; then the nonce is recorded.
    pub fn admit(&self, a: &Authentic, sender: Sender<'_>, now_unix: u64) -> Result<(), AuthError> {
        lock(&self.cache).admit(a.nonce, a.expiry, sender, now_unix)
    }

    /// Both steps, the sender counted as a stranger by its `X-Airclass-Node` header. On success
    /// the nonce is recorded; on any error nothing changes (except that expired nonces may be
    /// evicted).
    pub fn verify(
        &mut self,
        method: &str,
        path: &str,
        headers: &ReceivedHeaders<'_>,
        body: &[u8],
        now_unix: u64,
    ) -> Result<(), AuthError> {
        let a = self.authenticate(method, path, headers, body, now_unix)?;
        self.admit(
            &a,
            Sender::Stranger(headers.node.unwrap_or_default()),
            now_unix,
        )
    }
}

#[cfg(test)]
mod tests;
