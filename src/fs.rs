//! Atomic output files (native): every command that writes a file goes through here, so a
//! failed or interrupted run never leaves a partial file and never loses what was there.
//!
//! [`AtomicFile`] is a temporary file next to the destination (same directory, so the final
//! rename stays on one file system) that removes itself on drop unless [`AtomicFile::commit`]
//! synced and renamed it into place. [`write_atomic`] does that for bytes already in memory.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A temporary file that becomes `dest` on [`AtomicFile::commit`], and disappears otherwise.
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl AtomicFile {
    /// Create `.<name>.partial-<pid>-<i>` next to `dest`.
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        for i in 0..100u32 {
            let tmp = dir.join(format!(".{base}.partial-{}-{i}", std::process::id()));
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(f) => return Ok(AtomicFile { file: Some(f), tmp, dest: dest.to_path_buf() }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(format!("creating a temporary file in {}", dir.display()), e)),
            }
        }
        Err(Error::Format(format!("could not create a temporary file in {}", dir.display())))
    }

    /// The temporary file's path (for messages).
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// The open temporary file.
    pub fn file(&mut self) -> Result<&mut File> {
        self.file.as_mut().ok_or_else(|| Error::Format(format!("{}: already committed", self.tmp.display())))
    }

    /// Flush to disk and rename over the destination.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().ok_or_else(|| Error::Format(format!("{}: already committed", self.tmp.display())))?;
        file.sync_all().map_err(|e| Error::io(format!("writing {}", self.dest.display()), e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(format!("renaming {} to {}", self.tmp.display(), self.dest.display()), e))?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Write `bytes` to `path` atomically (a temporary file renamed into place).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    let ctx = format!("writing {}", path.display());
    f.file()?.write_all(bytes).map_err(|e| Error::io(ctx, e))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ssv2a-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn commit_replaces_and_drop_leaves_nothing() {
        let d = dir("commit");
        let out = d.join("a.bin");
        std::fs::write(&out, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&out).unwrap();
            f.file().unwrap().write_all(b"half").unwrap();
            // dropped without commit: the old file stays, no temporary file is left
        }
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        write_atomic(&out, b"new").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        let missing = d.join("no/such/dir/x.bin");
        assert!(write_atomic(&missing, b"x").is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
