//! The per-installation secret that keys session-key hashes. It is generated at the first start
//! and kept next to the state files (`<state dir>/provproxy.salt`, 0600), so that a client finds
//! its persisted session again after a restart while nobody without the file can match a hash
//! from `/sessions` or a trace to a header value or credential.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::key::{random_secret, KeyHasher, HASH_KEY_LEN};
use super::persist::{publish_file, Publish};
use super::SessionError;

/// The file's name inside a state directory.
pub(crate) const SALT_FILE: &str = "provproxy.salt";

/// The hasher keyed by `dir`'s secret file, created (0600) when there is none yet. Two
/// processes starting at once agree on one secret: the new file appears under its name only
/// complete, through a hard link that fails when the other process got there first.
pub(crate) fn load_or_create(dir: &Path) -> Result<KeyHasher, SessionError> {
    let path = path_for(dir);
    if let Some(secret) = read(&path)? {
        return Ok(KeyHasher::new(&secret));
    }
    let secret = random_secret().map_err(|_| SessionError::Random)?;
    let written = create(&path, &secret).map_err(|source| SessionError::Write {
        path: path.clone(),
        source,
    })?;
    if written {
        return Ok(KeyHasher::new(&secret));
    }
    match read(&path)? {
        Some(secret) => Ok(KeyHasher::new(&secret)),
        None => Err(invalid(&path, "it vanished while being created")),
    }
}

fn read(path: &Path) -> Result<Option<[u8; HASH_KEY_LEN]>, SessionError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SessionError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let hex = text.trim_end();
    if hex.len() != HASH_KEY_LEN * 2 {
        return Err(invalid(path, "it does not hold 64 hex digits"));
    }
    let mut secret = [0u8; HASH_KEY_LEN];
    for (byte, pair) in secret.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let digits = std::str::from_utf8(pair).ok();
        *byte = digits
            .and_then(|digits| u8::from_str_radix(digits, 16).ok())
            .ok_or_else(|| invalid(path, "it does not hold 64 hex digits"))?;
    }
    Ok(Some(secret))
}

fn invalid(path: &Path, reason: &str) -> SessionError {
    SessionError::Salt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Writes the secret through a temp file (0600 from creation, synced) linked to `path`.
/// False when `path` already existed: the secret in it is the one to use.
fn create(path: &Path, secret: &[u8; HASH_KEY_LEN]) -> io::Result<bool> {
    let mut text = String::with_capacity(HASH_KEY_LEN * 2 + 1);
    for byte in secret {
        let _ = write!(text, "{byte:02x}");
    }
    text.push('\n');
    publish_file(
        path,
        |file| file.write_all(text.as_bytes()),
        Publish::KeepExisting,
    )
}

/// Where a state file's secret lives.
pub(crate) fn path_for(dir: &Path) -> PathBuf {
    dir.join(SALT_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_0600_and_the_same_on_every_later_load() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let path = path_for(dir.path());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        let second = load_or_create(dir.path()).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), text, "never rewritten");
        let sign = |hasher: &KeyHasher| hasher.hashed("header", None, b"acme");
        assert_eq!(sign(&first), sign(&second));
        let entries = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1, "no temp file left behind");
    }

    #[test]
    fn a_damaged_secret_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path());
        fs::write(&path, "not hex\n").unwrap();
        let Err(error) = load_or_create(dir.path()) else {
            panic!("a damaged secret must not be used");
        };
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "not hex\n",
            "left alone"
        );
    }

    #[test]
    fn a_secret_created_by_another_process_meanwhile_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path());
        fs::write(&path, format!("{}\n", "ab".repeat(HASH_KEY_LEN))).unwrap();
        assert!(!create(&path, &[0; HASH_KEY_LEN]).unwrap());
        assert_eq!(read(&path).unwrap(), Some([0xab; HASH_KEY_LEN]));
    }
}
