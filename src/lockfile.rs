//! Files a running instance owns: an advisory `flock` on `<file>.lock`, which holds the PID of
//! the process that took it.
//!
//! Two processes on one session state file overwrite each other's sessions, and a second
//! instance started on a live config rotated the first one's trace away before failing to bind.
//! Every owned file is therefore locked before anything reads, rotates or writes it; a process
//! that cannot take a lock stops with the holder's PID and touches nothing.
//!
//! The lock is on a separate file, not on the data file itself, because the data files are
//! replaced by rename (state) and moved by rotation (traces), and a lock on a renamed inode
//! protects nothing. The lock file is left in place when the process ends: the kernel releases
//! the `flock` with the process, and unlinking a lock file races with a process opening it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a file could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{} is in use by {} (lock {}); stop that instance first, or give this one its own files",
        .file.display(),
        holder(*.pid),
        .lock.display()
    )]
    Held {
        file: PathBuf,
        lock: PathBuf,
        /// The holder's PID as it wrote it; `None` when the lock file does not say.
        pid: Option<u32>,
    },
    #[error("cannot lock {} (lock {}): {source}", .file.display(), .lock.display())]
    Io {
        file: PathBuf,
        lock: PathBuf,
        source: io::Error,
    },
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("process {pid}"),
        None => "another process".to_owned(),
    }
}

/// An exclusive lock on one file, held until dropped (or the process ends).
#[derive(Debug)]
pub struct FileLock {
    /// Closing the descriptor releases the `flock`.
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Locks `file` through `<file>.lock` (created 0600, with its directory 0700 when missing)
    /// and writes this process's PID into it. Fails at once, without waiting, when another
    /// open lock holds it, in this process or another.
    pub fn acquire(file: &Path) -> Result<FileLock, LockError> {
        let lock = lock_path(file);
        let io_error = |source| LockError::Io {
            file: file.to_owned(),
            lock: lock.clone(),
            source,
        };
        if let Some(dir) = lock.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_error)?;
        }
        // No truncation on open: the holder's PID must survive a failed attempt to read it.
        let mut handle = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock)
            .map_err(io_error)?;
        // SAFETY: `flock` only reads the descriptor, which `handle` keeps open for the call.
        let locked = unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::WouldBlock {
                return Err(LockError::Held {
                    file: file.to_owned(),
                    pid: read_pid(&mut handle),
                    lock,
                });
            }
            return Err(io_error(error));
        }
        let pid = format!("{}\n", std::process::id());
        handle
            .set_len(0)
            .and_then(|()| handle.seek(SeekFrom::Start(0)))
            .and_then(|_| handle.write_all(pid.as_bytes()))
            .map_err(io_error)?;
        Ok(FileLock {
            _file: handle,
            path: lock,
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Locks every file in `files`, in order, skipping repeats; on the first failure the locks
/// already taken are released and nothing else is touched.
pub fn acquire_all<'a>(
    files: impl IntoIterator<Item = &'a Path>,
) -> Result<Vec<FileLock>, LockError> {
    let mut locks: Vec<FileLock> = Vec::new();
    let mut seen: Vec<&Path> = Vec::new();
    for file in files {
        if seen.contains(&file) {
            continue;
        }
        seen.push(file);
        locks.push(FileLock::acquire(file)?);
    }
    Ok(locks)
}

/// `<file>.lock`
pub fn lock_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_second_lock_on_the_same_file_fails_naming_the_holder_and_the_first_survives() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/sessions.json");
        let first = FileLock::acquire(&file).unwrap();
        let Err(error) = FileLock::acquire(&file) else {
            panic!("a second lock must fail");
        };
        let message = error.to_string();
        assert!(
            matches!(error, LockError::Held { pid: Some(pid), .. } if pid == std::process::id()),
            "{message}"
        );
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("process {}", std::process::id())),
            "{message}"
        );
        // The failed attempt left the holder's PID in place.
        let written = fs::read_to_string(first.path()).unwrap();
        assert_eq!(written.trim(), std::process::id().to_string());
    }

    #[test]
    fn the_lock_is_free_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("trace.har");
        drop(FileLock::acquire(&file).unwrap());
        assert!(FileLock::acquire(&file).is_ok());
    }

    #[test]
    fn the_lock_file_is_0600_in_a_0700_directory_and_the_data_file_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("traces/osmc.har");
        let lock = FileLock::acquire(&file).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(lock.path()), 0o600);
        assert_eq!(mode(&dir.path().join("traces")), 0o700);
        assert!(!file.exists());
    }

    #[test]
    fn acquire_all_releases_what_it_took_when_one_file_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.har"), dir.path().join("b.jsonl"));
        let held = FileLock::acquire(&b).unwrap();
        assert!(acquire_all([a.as_path(), b.as_path()]).is_err());
        assert!(FileLock::acquire(&a).is_ok(), "a was released");
        drop(held);
        let both = acquire_all([a.as_path(), b.as_path(), a.as_path()]).unwrap();
        assert_eq!(both.len(), 2, "a repeated file is locked once");
    }
}
