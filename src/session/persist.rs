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

use cookie_store::Cookie;

use super::jar::StoredCookie;
use super::seal::{self, StateCipher};
use super::SessionError;

const VERSION: u32 = 1;

/// The sessions of one state file, cookies in clear. No `Debug` here or below: these hold
/// cookie values.
pub(crate) struct StateDoc {
    pub(crate) sessions: Vec<PersistedSession<StoredCookie>>,
}

impl StateDoc {
    pub(crate) fn new(sessions: Vec<PersistedSession<StoredCookie>>) -> StateDoc {
        StateDoc { sessions }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct PersistedSession<C, T = StoredToken> {
    pub(crate) route: String,
    pub(crate) key: String,
    pub(crate) created_ms: u64,
    pub(crate) last_used_ms: u64,
    pub(crate) generation: u64,
    pub(crate) cookies: Vec<C>,
    /// Session tokens; absent from files written before tokens existed, and left out when
    /// there are none, so a file without tokens reads as it always did.
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub(crate) tokens: Vec<T>,
}

/// A session token in clear.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredToken {
    pub(crate) name: String,
    pub(crate) value: String,
}

/// A token as written: sealed like a cookie value when there is a key.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum FileToken {
    Plain(StoredToken),
    Sealed { name: String, sealed: String },
}

/// What a sealed token is bound to. Four parts where a cookie's context has three, so a
/// sealed cookie cannot be passed off as a token or the other way round.
fn token_seal_context(route: &str, key: &str, name: &str) -> Vec<u8> {
    [route.as_bytes(), key.as_bytes(), b"token", name.as_bytes()].join(&0u8)
}

/// The file as written. Without an encryption key it is exactly the format of earlier
/// versions; with one, it names the scheme and the salt of this version's key, and each cookie
/// is its name (readable) and its sealed self.
#[derive(Serialize, Deserialize)]
struct FileDoc {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption: Option<Encryption>,
    sessions: Vec<PersistedSession<FileCookie, FileToken>>,
}

#[derive(Serialize, Deserialize)]
struct Encryption {
    scheme: String,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum FileCookie {
    Plain(StoredCookie),
    Sealed {
        created: u64,
        name: String,
        sealed: String,
    },
}

/// What a sealed cookie is bound to: moving it to another cookie, session or route breaks it.
fn seal_context(route: &str, key: &str, name: &str) -> Vec<u8> {
    [route.as_bytes(), key.as_bytes(), name.as_bytes()].join(&0u8)
}

pub(crate) fn to_unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Reads a state file; `None` when there is none yet. Sealed cookies are opened with `cipher`
/// (or, for a file sealed before a key rotation, `previous`); a file sealed under another key,
/// or sealed while no key is configured, is an error naming it, never a jar of garbage cookies.
pub(crate) fn read_state(
    path: &Path,
    cipher: Option<&StateCipher>,
    previous: Option<&StateCipher>,
) -> Result<Option<StateDoc>, SessionError> {
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
    decode(&bytes, cipher, previous)
        .map(Some)
        .map_err(|error| match error {
            DecodeError::Corrupt(reason) => SessionError::Corrupt {
                path: path.to_owned(),
                reason,
            },
            DecodeError::NoKey => SessionError::NoKey {
                path: path.to_owned(),
            },
            DecodeError::WrongKey => SessionError::WrongKey {
                path: path.to_owned(),
            },
        })
}

/// Why a state document (a file, or one session in a shared store) cannot be read. Never holds
/// a value from the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("{0}")]
    Corrupt(String),
    #[error("it holds encrypted cookies but no state.encryption_key is set")]
    NoKey,
    #[error(
        "state.encryption_key (nor encryption_key_previous) is not the key it was sealed with"
    )]
    WrongKey,
}

/// The sessions of a state document, opened with `cipher`, else with `previous` (the key
/// before a rotation).
pub(crate) fn decode(
    bytes: &[u8],
    cipher: Option<&StateCipher>,
    previous: Option<&StateCipher>,
) -> Result<StateDoc, DecodeError> {
    match decode_with(bytes, cipher) {
        Err(DecodeError::WrongKey) if previous.is_some() => decode_with(bytes, previous),
        decoded => decoded,
    }
}

fn decode_with(bytes: &[u8], cipher: Option<&StateCipher>) -> Result<StateDoc, DecodeError> {
    let corrupt = DecodeError::Corrupt;
    let doc: FileDoc = serde_json::from_slice(bytes).map_err(|error| {
        // serde's message can quote the offending value, which may be a cookie: only say where.
        corrupt(format!(
            "invalid {} at line {} column {}",
            match error.classify() {
                serde_json::error::Category::Io => "read",
                serde_json::error::Category::Syntax => "JSON",
                serde_json::error::Category::Data => "session data",
                serde_json::error::Category::Eof => "JSON (truncated)",
            },
            error.line(),
            error.column()
        ))
    })?;
    if doc.version != VERSION {
        return Err(corrupt(format!("unsupported version {}", doc.version)));
    }
    let file_key = match (&doc.encryption, cipher) {
        (None, _) => None,
        (Some(encryption), _) if encryption.scheme != seal::SCHEME => {
            return Err(corrupt(format!(
                "unknown encryption scheme {:?}",
                encryption.scheme
            )))
        }
        (Some(_), None) => return Err(DecodeError::NoKey),
        (Some(encryption), Some(cipher)) => Some(
            cipher
                .file_key(&encryption.salt)
                .ok_or_else(|| corrupt("invalid encryption salt".to_owned()))?,
        ),
    };
    // A sealed value (`what`: a cookie, a token) opened under what it is bound to.
    let open = |what: &str, context: &[u8], sealed: &str| {
        let Some(file_key) = &file_key else {
            return Err(corrupt(format!(
                "a sealed {what} in a file without a key salt"
            )));
        };
        file_key.open(context, sealed).ok_or(DecodeError::WrongKey)
    };
    let mut sessions = Vec::with_capacity(doc.sessions.len());
    for saved in doc.sessions {
        let mut cookies = Vec::with_capacity(saved.cookies.len());
        for cookie in saved.cookies {
            match cookie {
                FileCookie::Plain(stored) => cookies.push(stored),
                FileCookie::Sealed {
                    created,
                    name,
                    sealed,
                } => {
                    let context = seal_context(&saved.route, &saved.key, &name);
                    let plain = open("cookie", &context, &sealed)?;
                    let cookie: Cookie<'static> = serde_json::from_slice(&plain)
                        .ok()
                        .filter(|cookie: &Cookie<'static>| cookie.name() == name)
                        .ok_or_else(|| corrupt("a sealed cookie does not hold a cookie".into()))?;
                    cookies.push(StoredCookie { created, cookie });
                }
            }
        }
        let mut tokens = Vec::with_capacity(saved.tokens.len());
        for token in saved.tokens {
            match token {
                FileToken::Plain(stored) => tokens.push(stored),
                FileToken::Sealed { name, sealed } => {
                    let context = token_seal_context(&saved.route, &saved.key, &name);
                    let plain = open("token", &context, &sealed)?;
                    let value = String::from_utf8(plain)
                        .map_err(|_| corrupt("a sealed token is not text".into()))?;
                    tokens.push(StoredToken { name, value });
                }
            }
        }
        sessions.push(PersistedSession {
            route: saved.route,
            key: saved.key,
            created_ms: saved.created_ms,
            last_used_ms: saved.last_used_ms,
            generation: saved.generation,
            cookies,
            tokens,
        });
    }
    Ok(StateDoc { sessions })
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

/// Creates the state file's directory (0700) so that a bad `persist` path fails at startup;
/// returns it.
pub(crate) fn ensure_dir(path: &Path) -> Result<&Path, SessionError> {
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
        })?;
    Ok(dir)
}

/// Serialises (sealing every cookie when there is a `cipher`) and atomically replaces the
/// state file. Blocking: call it off the runtime.
pub(crate) fn write_state(
    path: &Path,
    doc: StateDoc,
    cipher: Option<&StateCipher>,
) -> io::Result<()> {
    let bytes = encode(doc, cipher, true)?;
    replace_file(path, |file| file.write_all(&bytes))
}

/// A state document as written to a file (`pretty`) or a shared store: cookies sealed when
/// there is a `cipher`, under a key of their own (a fresh salt per document).
pub(crate) fn encode(
    doc: StateDoc,
    cipher: Option<&StateCipher>,
    pretty: bool,
) -> io::Result<Vec<u8>> {
    let file_key = cipher
        .map(StateCipher::new_file_key)
        .transpose()
        .map_err(|_| io::Error::other("the system random number generator failed"))?;
    let mut sessions = Vec::with_capacity(doc.sessions.len());
    for saved in doc.sessions {
        let cookies = match &file_key {
            None => saved.cookies.into_iter().map(FileCookie::Plain).collect(),
            Some(file_key) => {
                let mut sealed = Vec::with_capacity(saved.cookies.len());
                for stored in saved.cookies {
                    let name = stored.cookie.name().to_owned();
                    let plain = serde_json::to_vec(&stored.cookie).map_err(io::Error::other)?;
                    let context = seal_context(&saved.route, &saved.key, &name);
                    sealed.push(FileCookie::Sealed {
                        created: stored.created,
                        name,
                        sealed: file_key.seal(&context, &plain).map_err(|_| {
                            io::Error::other("the system random number generator failed")
                        })?,
                    });
                }
                sealed
            }
        };
        let tokens =
            match &file_key {
                None => saved.tokens.into_iter().map(FileToken::Plain).collect(),
                Some(file_key) => {
                    let mut sealed = Vec::with_capacity(saved.tokens.len());
                    for token in saved.tokens {
                        let context = token_seal_context(&saved.route, &saved.key, &token.name);
                        sealed.push(FileToken::Sealed {
                            sealed: file_key.seal(&context, token.value.as_bytes()).map_err(
                                |_| io::Error::other("the system random number generator failed"),
                            )?,
                            name: token.name,
                        });
                    }
                    sealed
                }
            };
        sessions.push(PersistedSession {
            route: saved.route,
            key: saved.key,
            created_ms: saved.created_ms,
            last_used_ms: saved.last_used_ms,
            generation: saved.generation,
            cookies,
            tokens,
        });
    }
    let file = FileDoc {
        version: VERSION,
        encryption: file_key.map(|key| Encryption {
            scheme: seal::SCHEME.to_owned(),
            salt: key.salt,
        }),
        sessions,
    };
    if pretty {
        serde_json::to_vec_pretty(&file).map_err(io::Error::other)
    } else {
        serde_json::to_vec(&file).map_err(io::Error::other)
    }
}

/// Replaces `path` with what `fill` writes, so that a reader (or a crash) sees the old content
/// or the new, never a mix. On any failure `path` is untouched.
pub(crate) fn replace_file(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    publish_file(path, fill, Publish::Replace).map(|_| ())
}

/// How a fully written temp file takes its final name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publish {
    /// Renamed over whatever `path` holds.
    Replace,
    /// Linked to `path` only if nothing is there yet: two processes creating the same file agree
    /// on the first one's content.
    KeepExisting,
}

/// Writes `path` through a temp file in the same directory (0600 from creation), filled by
/// `fill` and fsynced, then published as `publish` says and the directory fsynced. True when the
/// new content took the name (false: `KeepExisting` found a file there). On any failure the temp
/// file is removed and `path` is untouched.
pub(crate) fn publish_file(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
    publish: Publish,
) -> io::Result<bool> {
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
        let published = match publish {
            Publish::Replace => fs::rename(&tmp, path).map(|()| true)?,
            Publish::KeepExisting => match fs::hard_link(&tmp, path) {
                Ok(()) => true,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => false,
                Err(error) => return Err(error),
            },
        };
        if published {
            // The new name must survive a crash.
            File::open(dir)?.sync_all()?;
        }
        Ok(published)
    })();
    if result.is_err() || publish == Publish::KeepExisting {
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
        write_state(&path, StateDoc::new(Vec::new()), None).unwrap();
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
        let result = write_state(&blocker.join("state.json"), StateDoc::new(Vec::new()), None);
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
        let Err(error) = read_state(&path, None, None) else {
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
        let Err(error) = read_state(&path, None, None) else {
            panic!("must not load");
        };
        assert!(error.to_string().contains("unsupported version 99"));
    }

    #[test]
    fn missing_file_reads_as_no_state() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_state(&dir.path().join("none.json"), None, None)
            .unwrap()
            .is_none());
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
