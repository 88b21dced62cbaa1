//! Creating missing secret files (`airclass-node secrets init`); never overwrites.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::app_token::token_sha256_hex;
use rand::distributions::Alphanumeric;
use rand::Rng;

/// A base62 string of `n` characters from the OS RNG.
pub fn random_base62(n: usize) -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// Create every missing secret in `dir`; returns the names created.
/// Files are 0640 with group `group` when that group exists (0600 for the plain app token).
pub fn init_dir(dir: &Path, group: &str) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let gid = nix::unistd::Group::from_name(group)
        .ok()
        .flatten()
        .map(|g| g.gid);
    if let Some(gid) = gid {
        nix::unistd::chown(dir, None, Some(gid)).map_err(std::io::Error::from)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
    }
    let mut created = Vec::new();
    let mut make =
        |name: &str, value: String, mode: u32, group_readable: bool| -> std::io::Result<()> {
            let path = dir.join(name);
            if path.exists() {
                return Ok(());
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)?;
            f.write_all(value.as_bytes())?;
            f.write_all(b"\n")?;
            if let (Some(gid), true) = (gid, group_readable) {
                nix::unistd::chown(&path, None, Some(gid)).map_err(std::io::Error::from)?;
            }
            created.push(name.to_string());
            Ok(())
        };
    make(
        "livekit-api-key",
        format!("API{}", random_base62(12)),
        0o640,
        true,
    )?;
    make("livekit-api-secret", random_base62(43), 0o640, true)?;
    make("cluster-secret", random_base62(43), 0o640, true)?;
    // The plain token (root only) is handed to the web backend; the daemon reads only its hash.
    // An admin may delete the plain token once copied, so nothing is regenerated while the
    // hash exists.
    if !dir.join("app-token.sha256").exists() {
        let token_path = dir.join("app-token");
        let token = if token_path.exists() {
            std::fs::read_to_string(&token_path)?.trim().to_string()
        } else {
            let t = random_base62(43);
            make("app-token", t.clone(), 0o600, false)?;
            t
        };
        make("app-token.sha256", token_sha256_hex(&token), 0o640, true)?;
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("s");
        let created = init_dir(&d, "no-such-group-here").unwrap();
        assert_eq!(created.len(), 5);
        let secret = std::fs::read_to_string(d.join("livekit-api-secret")).unwrap();
        assert!(secret.trim().len() >= 32);
        let mode = std::fs::metadata(d.join("app-token"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let token = std::fs::read_to_string(d.join("app-token")).unwrap();
        let hash = std::fs::read_to_string(d.join("app-token.sha256")).unwrap();
        assert_eq!(hash.trim(), token_sha256_hex(token.trim()));
        assert!(init_dir(&d, "x").unwrap().is_empty());
        // the plain token may be deleted once handed out: it is not regenerated
        std::fs::remove_file(d.join("app-token")).unwrap();
        assert!(init_dir(&d, "x").unwrap().is_empty());
        assert!(!d.join("app-token").exists());
        assert_eq!(
            std::fs::read_to_string(d.join("livekit-api-secret")).unwrap(),
            secret
        );
    }
}
