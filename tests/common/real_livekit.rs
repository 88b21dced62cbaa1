//! Where the tests find the real livekit-server: one locator shared by every test binary.
//!
//! The pin and the cache path live in `scripts/livekit.sh` only; this asks it (`--path`).
//! `AIRCLASS_LIVEKIT=/path/to/livekit-server` overrides. A missing binary is a test
//! **failure** that says how to get one, never a skip.

use std::path::PathBuf;

/// Path of the pinned real livekit-server, or a panic that says how to install it.
pub fn real_livekit() -> PathBuf {
    if let Some(p) = std::env::var_os("AIRCLASS_LIVEKIT") {
        let p = PathBuf::from(p);
        assert!(
            is_executable(&p),
            "AIRCLASS_LIVEKIT={} is not an executable livekit-server",
            p.display()
        );
        return p;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/livekit.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg("--path")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script} --path: {e}"));
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        is_executable(&p),
        "the real livekit-server is missing at {}: run scripts/livekit.sh (builds the pinned \
         version with `go install`; needs Go >= 1.26 and the Go module proxy), or set \
         AIRCLASS_LIVEKIT to a livekit-server binary of the pinned version",
        p.display()
    );
    p
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
