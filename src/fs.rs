//! Output files (native): every command that writes a file goes through here, so a failed or
//! interrupted run never leaves a partial file and never loses what was there.
//!
//! What sits at the destination decides how it is written ([`Destination::of`]):
//! - nothing, or a regular file: a temporary file next to it (same folder, so the rename stays on
//!   one file system), renamed over it on [`AtomicFile::commit`] and removed on drop otherwise;
//! - a symbolic link: the same, at the file the link points to (the link stays a link);
//! - a character device or a FIFO (`/dev/null`, `/dev/stdout`, a named pipe): written
//!   directly, never replaced;
//! - anything else (a folder, a block device, a socket): refused.
//!
//! [`check_writable`] answers the same question before any work starts, so a run whose output
//! cannot be written fails in its first second, naming the user's path.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// How an output path is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Through a temporary file renamed over this path (the link target for a symlink).
    Replace(PathBuf),
    /// Straight into this character device or FIFO.
    Direct(PathBuf),
}

impl Destination {
    /// Classify `path` (following symbolic links, also dangling ones, up to 40 levels).
    pub fn of(path: &Path) -> Result<Destination> {
        let mut p = path.to_path_buf();
        for _ in 0..40 {
            let meta = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Destination::Replace(p)),
                Err(e) => return Err(Error::io(format!("output {}", path.display()), e)),
            };
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = std::fs::read_link(&p).map_err(|e| Error::io(format!("output {}: reading the link", path.display()), e))?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
                continue;
            }
            if ft.is_file() {
                return Ok(Destination::Replace(p));
            }
            if ft.is_dir() {
                return Err(Error::arg("output", format!("{} is a folder; give a file name", path.display())));
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::FileTypeExt;
                if ft.is_char_device() || ft.is_fifo() {
                    return Ok(Destination::Direct(p));
                }
                let what = if ft.is_block_device() {
                    "a block device"
                } else if ft.is_socket() {
                    "a socket"
                } else {
                    "a special file"
                };
                return Err(Error::arg("output", format!("{} is {what}; refusing to write to it", path.display())));
            }
            #[cfg(not(unix))]
            return Err(Error::arg("output", format!("{} is a special file; refusing to write to it", path.display())));
        }
        Err(Error::arg("output", format!("{}: too many levels of symbolic links", path.display())))
    }
}

/// Check, before any work, that `path` can be written as [`AtomicFile`] will write it: a
/// writable folder for a new or regular file (probed with a temporary file, then removed), or
/// a writable device or FIFO. Errors name `path`.
pub fn check_writable(path: &Path) -> Result<()> {
    match Destination::of(path)? {
        Destination::Replace(p) => {
            let dir = parent_dir(&p);
            if !dir.is_dir() {
                return Err(Error::arg("output", format!("{}: the folder {} does not exist", path.display(), dir.display())));
            }
            let probe = AtomicFile::create_temp(&p).map_err(|e| Error::arg("output", format!("{} cannot be written: {}", path.display(), short(&e))))?;
            drop(probe);
            Ok(())
        }
        Destination::Direct(p) => {
            // Opening a FIFO for writing blocks until a reader comes; only check permissions.
            let meta = std::fs::metadata(&p).map_err(|e| Error::io(format!("output {}", path.display()), e))?;
            if meta.permissions().readonly() {
                return Err(Error::arg("output", format!("{} is not writable", path.display())));
            }
            Ok(())
        }
    }
}

fn short(e: &Error) -> String {
    match e {
        Error::Io { err, .. } => err.to_string(),
        other => other.to_string(),
    }
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An output being written: a temporary file that becomes the destination on
/// [`AtomicFile::commit`] and disappears otherwise, or a device written directly.
pub struct AtomicFile {
    file: Option<File>,
    /// The temporary file (empty once committed, and for direct writes).
    tmp: PathBuf,
    dest: PathBuf,
}

impl AtomicFile {
    /// Start writing `dest` as [`Destination::of`] says.
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        match Destination::of(dest)? {
            Destination::Replace(p) => Self::create_temp(&p),
            Destination::Direct(p) => {
                let f = std::fs::OpenOptions::new().write(true).open(&p).map_err(|e| Error::io(format!("opening {}", dest.display()), e))?;
                Ok(AtomicFile { file: Some(f), tmp: PathBuf::new(), dest: p })
            }
        }
    }

    /// `.<name>.partial-<pid>-<i>` next to `dest`.
    fn create_temp(dest: &Path) -> Result<AtomicFile> {
        let dir = parent_dir(dest);
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

    /// Where the bytes go now (the temporary file, or the device).
    pub fn temp_path(&self) -> &Path {
        if self.tmp.as_os_str().is_empty() {
            &self.dest
        } else {
            &self.tmp
        }
    }

    /// The open file.
    pub fn file(&mut self) -> Result<&mut File> {
        self.file.as_mut().ok_or_else(|| Error::Format(format!("{}: already committed", self.dest.display())))
    }

    /// Flush to disk and rename over the destination (direct writes: flush).
    pub fn commit(mut self) -> Result<()> {
        let mut file = self.file.take().ok_or_else(|| Error::Format(format!("{}: already committed", self.dest.display())))?;
        if self.tmp.as_os_str().is_empty() {
            return file.flush().map_err(|e| Error::io(format!("writing {}", self.dest.display()), e));
        }
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

/// Write `bytes` to `path` as [`AtomicFile`] does.
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
        assert!(check_writable(&missing).unwrap_err().to_string().contains("no/such/dir/x.bin"));
        assert!(check_writable(&d).is_err(), "a folder");
        check_writable(&out).unwrap();
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "the probe left a file");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_written_through_and_devices_directly() {
        let d = dir("links");
        let target = d.join("target.wav");
        std::fs::write(&target, b"old").unwrap();
        let link = d.join("link.wav");
        std::os::unix::fs::symlink("target.wav", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        // A dangling link creates its target.
        let dangling = d.join("dangling.wav");
        std::os::unix::fs::symlink("made.wav", &dangling).unwrap();
        write_atomic(&dangling, b"made").unwrap();
        assert_eq!(std::fs::read(d.join("made.wav")).unwrap(), b"made");
        assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
        // A character device is written, not replaced.
        use std::os::unix::fs::FileTypeExt;
        let null = Path::new("/dev/null");
        if std::fs::metadata(null).is_ok_and(|m| m.file_type().is_char_device()) {
            assert_eq!(Destination::of(null).unwrap(), Destination::Direct(null.to_path_buf()));
            check_writable(null).unwrap();
            write_atomic(null, b"discarded").unwrap();
            assert!(std::fs::metadata(null).unwrap().file_type().is_char_device(), "/dev/null was replaced");
        }
        // A FIFO is written directly (a reader drains it).
        let fifo = d.join("pipe");
        if std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
            let f2 = fifo.clone();
            let reader = std::thread::spawn(move || std::fs::read(f2).unwrap());
            write_atomic(&fifo, b"through the pipe").unwrap();
            assert_eq!(reader.join().unwrap(), b"through the pipe");
            assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        }
        // A link loop is an error, not a hang.
        std::os::unix::fs::symlink("loop_b", d.join("loop_a")).unwrap();
        std::os::unix::fs::symlink("loop_a", d.join("loop_b")).unwrap();
        assert!(write_atomic(&d.join("loop_a"), b"x").is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
