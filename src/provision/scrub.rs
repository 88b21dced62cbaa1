//! Removing a used `provision.toml` from a FAT partition (ESP or USB stick) so that its secrets
//! are gone from the medium, not only from the directory.
//!
//! Deleting a file on FAT only marks its directory entry free (first byte 0xE5) and its
//! clusters unused: the bytes stay on the medium until reused. So the file is first overwritten
//! in place with zeros over its full length (FAT has no copy-on-write: the same clusters are
//! rewritten), `fsync`ed, then unlinked and the directory `fsync`ed. What remains is a deleted
//! directory entry holding the name and size. Flash media may keep stale copies of rewritten
//! blocks inside their controller (wear levelling) where no file system can reach them: a stick
//! that held secrets stays sensitive (docs/appliance.md says so).

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use super::ProvisionError;

/// Overwrite `path` with zeros, sync, unlink, sync its directory. Returns the bytes overwritten.
pub fn scrub_file(path: &Path) -> Result<u64, ProvisionError> {
    let err = |e| ProvisionError::write(path, e);
    let mut f = OpenOptions::new().write(true).open(path).map_err(err)?;
    let len = f.metadata().map_err(err)?.len();
    f.seek(SeekFrom::Start(0)).map_err(err)?;
    let zeros = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).map_err(err)?;
        left -= n as u64;
    }
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::remove_file(path).map_err(err)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrites_then_removes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("provision.toml");
        std::fs::write(&p, "cluster_secret = \"x\"\n").unwrap();
        // a hard link sees the same data blocks: after the scrub they hold zeros
        let witness = dir.path().join("witness");
        std::fs::hard_link(&p, &witness).unwrap();
        assert_eq!(scrub_file(&p).unwrap(), 21);
        assert!(!p.exists());
        assert_eq!(std::fs::read(&witness).unwrap(), vec![0u8; 21]);
    }
}
