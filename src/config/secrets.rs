//! Secrets: read from `$CREDENTIALS_DIRECTORY/<id>` first, then from the configured file.
//!
//! Secrets are never inline in the config, never logged (`Debug` prints `[redacted]`), and a
//! LiveKit API secret or cluster secret under 32 characters is refused.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Problem;

/// Shortest accepted LiveKit API secret and cluster secret.
pub const MIN_SECRET_LEN: usize = 32;

/// A secret value; its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself: only for the code that must use it (signing, key file).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One secret the daemon may need.
#[derive(Debug, Clone, Copy)]
pub struct SecretSpec {
    /// systemd credential id (`LoadCredential=ID:PATH`).
    pub credential: &'static str,
    /// Config key naming the fallback file.
    pub key: &'static str,
    /// Minimum length (0 = any non-empty).
    pub min_len: usize,
}

pub const API_KEY: SecretSpec = SecretSpec {
    credential: "livekit-api-key",
    key: "livekit.api_key_file",
    min_len: 0,
};
pub const API_SECRET: SecretSpec = SecretSpec {
    credential: "livekit-api-secret",
    key: "livekit.api_secret_file",
    min_len: MIN_SECRET_LEN,
};
pub const CLUSTER_SECRET: SecretSpec = SecretSpec {
    credential: "cluster-secret",
    key: "cluster.secret_file",
    min_len: MIN_SECRET_LEN,
};
pub const REDIS_PASSWORD: SecretSpec = SecretSpec {
    credential: "redis-password",
    key: "redis.password_file",
    min_len: 0,
};
pub const APP_TOKEN_SHA256: SecretSpec = SecretSpec {
    credential: "app-token-sha256",
    key: "api.app_token_sha256_file",
    min_len: 64,
};

/// Where a secret was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOrigin {
    Credential(PathBuf),
    File(PathBuf),
}

impl fmt::Display for SecretOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretOrigin::Credential(p) => write!(f, "credential {}", p.display()),
            SecretOrigin::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

/// Read one secret. `file` is the configured fallback path (None or empty = credential only).
/// A warning is pushed when the file is readable by others.
pub fn read_secret(
    spec: SecretSpec,
    file: Option<&str>,
    credentials_dir: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Result<(Secret, SecretOrigin), Problem> {
    let origin = locate(spec, file, credentials_dir)?;
    let path = match &origin {
        SecretOrigin::Credential(p) | SecretOrigin::File(p) => p.clone(),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| unreadable(spec, &path, &e))?;
    if let SecretOrigin::File(p) = &origin {
        if let Ok(meta) = std::fs::metadata(p) {
            if meta.permissions().mode() & 0o007 != 0 {
                warnings.push(format!(
                    "secret file {} is readable by others; run: chmod o-rwx {}",
                    p.display(),
                    p.display()
                ));
            }
        }
    }
    let value = check_value(spec, &origin, text.trim())?;
    Ok((Secret(value.to_string()), origin))
}

/// The credential when it is loaded, else the configured file.
fn locate(
    spec: SecretSpec,
    file: Option<&str>,
    credentials_dir: Option<&Path>,
) -> Result<SecretOrigin, Problem> {
    let cred = credentials_dir.map(|d| d.join(spec.credential));
    match (cred, file.filter(|f| !f.is_empty())) {
        (Some(c), _) if c.exists() => Ok(SecretOrigin::Credential(c)),
        (_, Some(f)) => Ok(SecretOrigin::File(PathBuf::from(f))),
        (_, None) => Err(Problem::new(
            "secrets",
            spec.key,
            format!(
                "no secret: credential {} is not loaded and no file is configured",
                spec.credential
            ),
            format!(
                "add LoadCredential={}:PATH to the unit or set {} to a file",
                spec.credential, spec.key
            ),
        )),
    }
}

fn unreadable(spec: SecretSpec, path: &Path, e: &std::io::Error) -> Problem {
    let (problem, fix) = if e.kind() == std::io::ErrorKind::NotFound {
        (
            format!("secret file {} does not exist", path.display()),
            format!(
                "create it (`airclass-node secrets init` makes all of them) or point {} elsewhere",
                spec.key
            ),
        )
    } else {
        (
            format!("cannot read secret file {}: {e}", path.display()),
            "make it readable by the service (root:airclass, mode 0640)".to_string(),
        )
    };
    Problem::new("secrets", spec.key, problem, fix)
}

/// 64 hex digits, as `airclass-node hash-token` prints.
pub fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The application token hash file holds something else — most often the token itself. The
/// fix produces the right file (`secrets init` writes both, `hash-token` prints the hash).
pub fn not_a_token_hash(origin: &SecretOrigin, value: &str) -> Problem {
    let path = match origin {
        SecretOrigin::Credential(p) | SecretOrigin::File(p) => p.display().to_string(),
    };
    let what = if value.is_empty() {
        "is empty".to_string()
    } else {
        format!(
            "holds {} characters that are not a SHA-256 (64 hex digits): probably the application token itself",
            value.chars().count()
        )
    };
    Problem::new(
        "secrets",
        APP_TOKEN_SHA256.key,
        format!("the application token hash in {origin} {what}"),
        format!(
            "store the token's hash, not the token: `airclass-node hash-token < /etc/airclass/secrets/app-token > {path}.new && mv {path}.new {path}` (hash-token reads the token on stdin and prints its SHA-256; never redirect into the file it reads)"
        ),
    )
}

/// Not empty, long enough, no whitespace. Messages never show the value.
fn check_value<'a>(
    spec: SecretSpec,
    origin: &SecretOrigin,
    value: &'a str,
) -> Result<&'a str, Problem> {
    let bad = |problem: String, fix: &str| Err(Problem::new("secrets", spec.key, problem, fix));
    if spec.credential == APP_TOKEN_SHA256.credential && !is_sha256_hex(value) {
        return Err(not_a_token_hash(origin, value));
    }
    if value.is_empty() {
        return bad(
            format!("the secret in {origin} is empty"),
            "write the secret into the file (`airclass-node secrets init` generates one)",
        );
    }
    let len = value.chars().count();
    if len < spec.min_len {
        return bad(
            format!(
                "the secret in {origin} has {len} characters; at least {} are required",
                spec.min_len
            ),
            "use a longer random secret, e.g. `head -c 32 /dev/urandom | base64`",
        );
    }
    if value.contains(char::is_whitespace) {
        return bad(
            format!("the secret in {origin} contains whitespace"),
            "use a secret without spaces or line breaks",
        );
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let s = Secret::new("hunter2hunter2hunter2hunter2hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
    }

    #[test]
    fn credential_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let cred = dir.path().join("creds");
        std::fs::create_dir(&cred).unwrap();
        std::fs::write(cred.join("cluster-secret"), "c".repeat(40)).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "f".repeat(40)).unwrap();
        let mut w = vec![];
        let (s, origin) = read_secret(
            CLUSTER_SECRET,
            Some(file.to_str().unwrap()),
            Some(&cred),
            &mut w,
        )
        .unwrap();
        assert_eq!(s.expose(), "c".repeat(40));
        assert!(matches!(origin, SecretOrigin::Credential(_)));
    }

    #[test]
    fn short_secret_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "short\n").unwrap();
        let err =
            read_secret(API_SECRET, Some(file.to_str().unwrap()), None, &mut vec![]).unwrap_err();
        assert!(err.problem.contains("5 characters"), "{err}");
        assert!(
            !err.to_string().contains("short"),
            "the secret itself leaked: {err}"
        );
    }

    #[test]
    fn a_raw_token_in_the_hash_file_gets_the_hash_token_advice() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app-token.sha256");
        std::fs::write(&file, "test-app-token-0123456789\n").unwrap();
        let err = read_secret(
            APP_TOKEN_SHA256,
            Some(file.to_str().unwrap()),
            None,
            &mut vec![],
        )
        .unwrap_err();
        assert!(err.problem.contains("not a SHA-256"), "{err}");
        assert!(err.fix.contains("airclass-node hash-token <"), "{err}");
        assert!(
            !err.fix.contains("urandom"),
            "advice that makes another wrong file: {err}"
        );
        assert!(
            !err.to_string().contains("test-app-token"),
            "the token leaked: {err}"
        );
        // the right content passes
        let hash = crate::app_token::token_sha256_hex("test-app-token-0123456789");
        std::fs::write(&file, format!("{hash}\n")).unwrap();
        read_secret(
            APP_TOKEN_SHA256,
            Some(file.to_str().unwrap()),
            None,
            &mut vec![],
        )
        .unwrap();
    }

    #[test]
    fn world_readable_warns() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "k".repeat(40)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut w = vec![];
        read_secret(API_SECRET, Some(file.to_str().unwrap()), None, &mut w).unwrap();
        assert_eq!(w.len(), 1);
    }
}
