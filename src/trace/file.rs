//! Trace files: created 0600, kept a valid document after every write, rotated by size, and
//! reopened after an I/O error or when the file was removed or moved away under us.
//!
//! Records are gathered in memory and written with one call per batch (see [`Sink::flush`]):
//! a `pwrite` per record cost the kernel about as much as the redaction and rendering of it.
//!
//! A file is opened only once the process holds its lock (see [`crate::lockfile`]), so nothing
//! here guards against a second writer. A HAR left by an earlier run is rotated away only when
//! this run writes its first record, and only if it holds entries: failed starts and restarts
//! without traffic do not push evidence out of the kept rotations.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::feed::FeedRecord;
use super::files::Sink;
use super::har;

/// Bigger than any HAR without entries; a larger existing file has some.
const EMPTY_HAR_MAX: u64 = 4096;
/// How long a broken file is left alone before trying to reopen it.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often to check that the path still names the file we write to.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// A batch this large is written without waiting for the writer's flush: about fifteen
/// records with bodies, enough to make the write's cost per record small. At 256 KiB the
/// proxy's peak RSS under load grew by 8-12 MiB for no measurable CPU gain.
const FLUSH_AT: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Har,
    JsonLines,
}

impl Format {
    fn head(self) -> &'static str {
        match self {
            Format::Har => har::HEAD,
            Format::JsonLines => "",
        }
    }

    fn tail(self) -> &'static str {
        match self {
            Format::Har => har::TAIL,
            Format::JsonLines => "",
        }
    }

    fn separator(self) -> &'static str {
        match self {
            Format::Har => har::SEPARATOR,
            Format::JsonLines => "",
        }
    }
}

/// One trace file of either format, as a writer [`Sink`].
#[derive(Debug)]
pub struct TraceFile {
    path: PathBuf,
    format: Format,
    rotate_bytes: u64,
    /// Rotated files kept next to the live one: `file.1` (newest) to `file.KEEP`.
    keep: usize,
    file: Option<File>,
    size: u64,
    entries: u64,
    retry_at: Instant,
    next_check: Instant,
    check_every: Duration,
    buf: Vec<u8>,
    /// Records not yet written, as they go into the file from `pending_at` on (each one
    /// overwriting the previous one's tail), so that one write puts them all in place.
    pending: Vec<u8>,
    pending_at: u64,
}

impl TraceFile {
    /// Opens `path`, creating its parent directories (0700) and the file (0600). An existing
    /// JSON-lines file is appended to. An existing HAR is left as it is until the first record
    /// comes; then it is rotated away if it has entries. So a start that fails after this, or a
    /// run without traffic, pushes nothing out of the kept rotations, and until this run records
    /// something the last run's trace is where the operator looks for it.
    pub fn open(path: &Path, format: Format, rotate_bytes: u64, keep: usize) -> io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        let now = Instant::now();
        let mut file = TraceFile {
            path: path.to_owned(),
            format,
            rotate_bytes,
            keep,
            file: None,
            size: 0,
            entries: 0,
            retry_at: now,
            next_check: now + CHECK_EVERY,
            check_every: CHECK_EVERY,
            buf: Vec::new(),
            pending: Vec::new(),
            pending_at: 0,
        };
        let earlier_har =
            format == Format::Har && fs::metadata(path).is_ok_and(|meta| meta.len() > 0);
        if earlier_har {
            // Fails now, at startup, if the file cannot be written; its content stays as it is.
            open_0600(path, false)?;
            // No file yet: the first append reopens it, rotating first (see `recover`).
            return Ok(file);
        }
        file.reopen()?;
        Ok(file)
    }

    /// Makes the "is the file still there" check run on every append (tests).
    #[cfg(test)]
    pub(crate) fn check_always(mut self) -> Self {
        self.check_every = Duration::ZERO;
        self.next_check = Instant::now();
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the entry in `buf`, which holds it between the separator and the tail, keeping
    /// the file a complete document.
    fn append(&mut self) -> io::Result<()> {
        // A failure to write what the old file was owed does not cost this record its place.
        let earlier = self.recover();
        if self.file.is_none() {
            return Err(io::Error::other("trace file unavailable, will retry"));
        }
        let (sep, tail) = (self.format.separator().len(), self.format.tail().len());
        // The separator goes only between entries.
        let start = if self.entries > 0 { 0 } else { sep };
        let len = self.buf.len() - start;
        let grows_to = self.size + (len - tail) as u64;
        let empty = (self.format.head().len() + tail) as u64;
        if self.rotate_bytes > 0 && self.size > empty && grows_to > self.rotate_bytes {
            self.write_pending()?;
            self.rotate()?;
            return self.append();
        }
        let offset = self.size - tail as u64;
        if self.pending.is_empty() {
            self.pending_at = offset;
        } else {
            // The batch ends at `self.size`; this record starts where its tail does.
            self.pending.truncate((offset - self.pending_at) as usize);
        }
        self.pending.extend_from_slice(&self.buf[start..]);
        self.size = offset + len as u64;
        self.entries += 1;
        if self.pending.len() >= FLUSH_AT {
            self.write_pending()?;
        }
        earlier
    }

    /// Writes the gathered records in one positioned write over the old tail: the file is a
    /// complete document before and after it, and only a crash inside the write itself leaves a
    /// torn tail. On failure the batch is lost and the file is reopened later.
    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = match &self.file {
            Some(file) => file.write_all_at(&self.pending, self.pending_at),
            None => Err(io::Error::other("trace file unavailable, will retry")),
        };
        self.pending.clear();
        if written.is_err() {
            self.broken();
        }
        written
    }

    fn broken(&mut self) {
        self.file = None;
        self.retry_at = Instant::now() + RETRY_AFTER;
    }

    /// Reopens a broken file once its retry time has come, and a live one whose path now names
    /// another file or nothing (removed, or moved away by logrotate). Fails when the records
    /// gathered for the old file could not be written to it.
    fn recover(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let stale = match &self.file {
            None => now >= self.retry_at,
            Some(file) if now >= self.next_check => {
                self.next_check = now + self.check_every;
                !same_file(file, &self.path)
            }
            Some(_) => false,
        };
        let mut owed = Ok(());
        if stale {
            // What was gathered belongs to the old file (moved away by logrotate, say).
            owed = self.write_pending();
            if self.reopen().is_err() {
                self.broken();
            }
        }
        owed
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.file = None;
        let existing = fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if self.format == Format::JsonLines && existing > 0 {
            // Lines are complete on their own: continue the file.
            let file = open_0600(&self.path, false)?;
            self.size = file.metadata()?.len();
            self.entries = 0;
            self.file = Some(file);
            return Ok(());
        }
        if existing > 0 && self.has_entries(existing) {
            self.shift()?;
        }
        self.create()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if let Err(e) = self.shift().and_then(|()| self.create()) {
            self.broken();
            return Err(e);
        }
        Ok(())
    }

    /// Whether the HAR at our path holds any entry; anything that is not an empty HAR (a torn
    /// or foreign file) counts as holding some, so that it is kept rather than overwritten.
    fn has_entries(&self, size: u64) -> bool {
        if size > EMPTY_HAR_MAX {
            return true;
        }
        let Ok(text) = fs::read(&self.path) else {
            return true;
        };
        let entries = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|doc| doc["log"]["entries"].as_array().map(Vec::len));
        entries != Some(0)
    }

    /// `file.2` → `file.3`, `file.1` → `file.2`, `file` → `file.1`; the oldest is overwritten.
    /// With `keep = 0` the file is removed.
    fn shift(&self) -> io::Result<()> {
        let ignore_missing = |result: io::Result<()>| match result {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        if self.keep == 0 {
            return ignore_missing(fs::remove_file(&self.path));
        }
        for n in (1..self.keep).rev() {
            ignore_missing(fs::rename(
                rotated(&self.path, n),
                rotated(&self.path, n + 1),
            ))?;
        }
        ignore_missing(fs::rename(&self.path, rotated(&self.path, 1)))
    }

    fn create(&mut self) -> io::Result<()> {
        let file = open_0600(&self.path, true)?;
        let empty = [self.format.head(), self.format.tail()].concat();
        file.write_all_at(empty.as_bytes(), 0)?;
        self.size = empty.len() as u64;
        self.entries = 0;
        self.file = Some(file);
        Ok(())
    }
}

impl Sink for TraceFile {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn write(&mut self, record: &FeedRecord) -> io::Result<()> {
        let entry: &[u8] = match self.format {
            Format::Har => record
                .har_entry
                .as_deref()
                .ok_or_else(|| io::Error::other("no HAR entry was rendered for this record"))?,
            Format::JsonLines => &record.line,
        };
        // Separator, entry and tail go into one buffer, written with one call.
        self.buf.clear();
        self.buf
            .extend_from_slice(self.format.separator().as_bytes());
        self.buf.extend_from_slice(entry);
        if self.format == Format::JsonLines {
            self.buf.push(b'\n');
        }
        self.buf.extend_from_slice(self.format.tail().as_bytes());
        self.append()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()
    }

    fn close(&mut self) -> io::Result<()> {
        self.write_pending()?;
        match self.file.take() {
            Some(file) => file.sync_all(),
            None => Ok(()),
        }
    }
}

/// `path.N`
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_0600(path: &Path, truncate: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only when the file is created; an existing file is tightened too.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
