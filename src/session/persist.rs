//! The session state file: its format, atomic replacement, and what happens to a bad one.
//!
//! Session cookies (JSESSIONID without Expires) are exactly what must survive a restart: the
//! target keeps the session open and refuses a new one until it times out. So every unexpired
//! cookie is written, persistent or not, which cookie_store's own `save` would drop.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::jar::StoredCookie;
use super::SessionError;

const VERSION: u32 = 1;

/// No `Debug` here or below: these hold cookie values.
#[derive(Serialize, Deserialize)]
pub(crate) struct StateDoc {
    pub(crate) version: u32,
    pub(crate) sessions: Vec<PersistedSession>,
}

impl StateDoc {
    pub(crate) fn new(sessions: Vec<PersistedSession>) -> StateDoc {
        StateDoc {
            version: VERSION,
            sessions,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct PersistedSession {
    pub(crate) route: String,
    pub(crate) key: String,
    pub(crate) created_ms: u64,
    pub(crate) last_used_ms: u64,
    pub(crate) generation: u64,
    pub(crate) cookies: Vec<StoredCookie>,
}

pub(crate) fn to_unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Reads a state file; `None` when there is none yet.
pub(crate) fn read_state(path: &Path) -> Result<Option<StateDoc>, SessionError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SessionError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let doc: StateDoc = serde_json::from_slice(&bytes).map_err(|error| SessionError::Corrupt {
        path: path.to_owned(),
        // serde's message can quote the offending value, which may be a cookie: only say where.
        reason: format!(
            "invalid {} at line {} column {}",
            match error.classify() {
                serde_json::error::Category::Io => "read",
                serde_json::error::Category::Syntax => "JSON",
                serde_json::error::Category::Data => "session data",
                serde_json::error::Category::Eof => "JSON (truncated)",
            },
            error.line(),
            error.column()
        ),
    })?;
    if doc.version != VERSION {
        return Err(SessionError::Corrupt {
            path: path.to_owned(),
            reason: format!("unsupported version {}", doc.version),
        });
    }
    Ok(Some(doc))
}

/// Renames a bad state file to `<file>.corrupt-<unix seconds>` (never deleting an earlier one)
/// and returns the new name.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, SessionError> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{stamp}"));
    let mut target = PathBuf::from(&name);
    let mut n = 1;
    while target.exists() {
        let mut numbered = name.clone();
        numbered.push(format!("-{n}"));
        target = PathBuf::from(numbered);
        n += 1;
    }
    fs::rename(path, &target).map_err(|source| SessionError::MoveAside {
        path: path.to_owned(),
        to: target.clone(),
        source,
    })?;
    Ok(target)
}

/// Creates the state file's directory (0700) so that a bad `persist` path fails at startup.
pub(crate) fn ensure_dir(path: &Path) -> Result<(), SessionError> {
    let dir = parent_dir(path);
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|source| SessionError::StateDir {
            path: dir.to_owned(),
            source,
        })
}

/// Serialises and atomically replaces the state file. Blocking: call it off the runtime.
pub(crate) fn write_state(path: &Path, doc: &StateDoc) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(doc).map_err(io::Error::other)?;
    replace_file(path, |file| file.write_all(&bytes))
}

/// Replaces `path` with what `fill` writes, so that a reader (or a crash) sees the old content
/// or the new, never a mix: temp file in the same directory (0600 from creation), fill, fsync,
/// rename over `path`, fsync the directory. On any failure the temp file is removed and `path`
/// is untouched.
pub(crate) fn replace_file(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = parent_dir(path);
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "state path has no file name")
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    // Left over by a crash of an earlier process with the same pid (pid 1 in a container).
    let _ = fs::remove_file(&tmp);

    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_file_is_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_state(&path, &StateDoc::new(Vec::new())).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn failed_write_midway_leaves_the_old_file_intact_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"old content").unwrap();
        let result = replace_file(&path, |file| {
            file.write_all(b"half of the new")?;
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        });
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::StorageFull);
        assert_eq!(fs::read(&path).unwrap(), b"old content");
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "the temp file is cleaned up");
    }

    #[test]
    fn write_into_a_missing_directory_fails_without_touching_anything() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, b"x").unwrap();
        let result = write_state(&blocker.join("state.json"), &StateDoc::new(Vec::new()));
        assert!(result.is_err());
        assert_eq!(fs::read(&blocker).unwrap(), b"x");
    }

    #[test]
    fn corrupt_file_error_names_the_file_and_never_quotes_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(
            &path,
            br#"{"version":1,"sessions":[{"route":"osmc","key":"route","created_ms":1,
            "last_used_ms":1,"generation":1,"cookies":[{"created":0,"cookie":"JSESSIONID=topsecret"}]}]}"#,
        )
        .unwrap();
        let Err(error) = read_state(&path) else {
            panic!("must not load");
        };
        let text = error.to_string();
        assert!(matches!(error, SessionError::Corrupt { .. }));
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("line 2"), "{text}");
        assert!(!text.contains("topsecret"), "{text}");
    }

    #[test]
    fn unsupported_version_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, br#"{"version":99,"sessions":[]}"#).unwrap();
        let Err(error) = read_state(&path) else {
            panic!("must not load");
        };
        assert!(error.to_string().contains("unsupported version 99"));
    }

    #[test]
    fn missing_file_reads_as_no_state() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_state(&dir.path().join("none.json")).unwrap().is_none());
    }

    #[test]
    fn move_aside_never_overwrites_an_earlier_corrupt_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"first").unwrap();
        let first = move_aside(&path).unwrap();
        fs::write(&path, b"second").unwrap();
        let second = move_aside(&path).unwrap();
        assert_ne!(first, second);
        assert_eq!(fs::read(&first).unwrap(), b"first");
        assert_eq!(fs::read(&second).unwrap(), b"second");
        assert!(!path.exists());
        let name = first.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("state.json.corrupt-"), "{name}");
    }
}
