//! Files the agent owns: atomic writes (a crash leaves the old or the new file, never
//! half of one) and the lock that keeps one service per state directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a state file or the lock could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another process held the lock for longer than the timeout.
    #[error("another agent process (pid {holder}) still holds {path} after {waited:?}")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// The pid written by the holder, if readable.
        holder: String,
        /// How long this run waited.
        waited: Duration,
    },
    /// The slot table could not be encoded (nothing was written).
    #[error("cannot encode the slot table: {0}")]
    Encode(String),
    /// The slot table exists but can not be read.
    #[error("slot table {path} is unreadable ({reason}); it was left untouched: move it aside and run `agent sync` to rebuild it from HAProxy and the desired state")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        reason: String,
    },
}

fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> StoreError + 'p {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path` atomically: a temporary file beside it, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(io("cannot create", &tmp))?;
    f.write_all(data).map_err(io("cannot write", &tmp))?;
    f.sync_all().map_err(io("cannot sync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("cannot replace", path))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a JSON file, or `T::default()` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(io("cannot read", path)(e)),
    }
}

/// An exclusive hold on the host's apply lock, released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the lock at `path`, waiting up to `timeout`; `on_wait` is called once with the
/// holder's pid when the lock is busy, so the user knows why nothing happens.
pub fn lock(
    path: &Path,
    timeout: Duration,
    on_wait: impl FnOnce(&str),
) -> Result<Lock, StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io("cannot open", path))?;
    let start = Instant::now();
    let mut on_wait = Some(on_wait);
    loop {
        match f.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = f.rewind();
                let _ = f.read_to_string(&mut holder);
                let holder = holder.trim().to_string();
                if let Some(cb) = on_wait.take() {
                    cb(&holder);
                }
                if start.elapsed() >= timeout {
                    return Err(StoreError::LockTimeout {
                        path: path.to_path_buf(),
                        holder,
                        waited: start.elapsed(),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("cannot lock", path)(e)),
        }
    }
    f.set_len(0).map_err(io("cannot write", path))?;
    f.rewind().map_err(io("cannot write", path))?;
    write!(f, "{}", std::process::id()).map_err(io("cannot write", path))?;
    Ok(Lock { _file: f })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        write_atomic(&p, b"{\"a\":1}").unwrap();
        write_atomic(&p, b"{\"a\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":2}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_held_lock_times_out_naming_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let _held = lock(&p, Duration::ZERO, |_| {}).unwrap();
        let mut told = None;
        let e = lock(&p, Duration::from_millis(120), |h| {
            told = Some(h.to_string())
        })
        .unwrap_err();
        assert_eq!(
            told.as_deref(),
            Some(std::process::id().to_string().as_str())
        );
        assert!(e.to_string().contains("still holds"), "{e}");
    }

    #[test]
    fn a_corrupt_table_is_an_error_not_a_reset() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("slots.json");
        std::fs::write(&p, "{broken").unwrap();
        let e = read_json::<crate::slots::SlotTable>(&p).unwrap_err();
        assert!(e.to_string().contains("left untouched"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{broken");
    }
}
