//! Measured figures: printed as `FIGURE name: value` and appended to
//! `target/test-logs/figures.txt`, which `scripts/test.sh` prints at the end of the tests stage.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

/// Record one figure (timings are figures, never assertions: the machine is noisy).
pub fn figure(name: &str, value: impl std::fmt::Display) {
    println!("FIGURE {name}: {value}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-logs");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("figures.txt"))
    {
        let _ = writeln!(f, "{name}: {value}");
    }
}
