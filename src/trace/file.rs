//! Trace files: created 0600, kept a valid document after every write, rotated by size, and
//! reopened after an I/O error or when the file was removed or moved away under us.
//!
//! Records are held (not copied) until the batch ends and written with one `pwritev` per batch
//! (see [`Sink::flush`]): a `pwrite` per record cost the kernel about as much as the redaction
//! and rendering of it.
//!
//! A file is opened only once the process holds its lock (see [`crate::lockfile`]), so nothing
//! here guards against a second writer. A HAR left by an earlier run is rotated away only when
//! this run writes its first record, and only if it holds entries: failed starts and restarts
//! without traffic do not push evidence out of the kept rotations.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
/// Records holding this many bytes are written without waiting for the writer's flush; until
/// then they are only referenced, so the bound is not a buffer. The kernel's cost of
/// a buffered write is mostly per page of the file, and less per page in larger writes (larger
/// page-cache folios): on this VM's ext4, 32 KiB writes cost 570-680 µs of system time per MiB
/// and 128 KiB writes 430-480. Under load a batch of the writer (10 ms) holds a few hundred KiB
/// per file, which goes out 128 KiB at a time. Records are written twice (JSON line, HAR
/// entry), so this is the trace's largest kernel cost.
const FLUSH_AT: usize = 128 * 1024;

/// The most slices one `pwritev` takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

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
    /// Records not yet written. They go into the file one after the other from `pending_at`
    /// on (the first over the old tail), then the tail: one `pwritev` puts them all in place,
    /// straight from the bytes the feed thread rendered, with no copy on this side.
    pending: Vec<Pending>,
    /// Their bytes, separators and newlines included.
    pending_len: usize,
    pending_at: u64,
}

/// A record waiting in [`TraceFile::pending`].
#[derive(Debug)]
struct Pending {
    record: Arc<FeedRecord>,
    /// Whether a separator goes before it (not before a file's first entry).
    separator: bool,
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
            pending: Vec::new(),
            pending_len: 0,
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

    /// The bytes of `record` this file holds: its HAR entry or its JSON line.
    fn entry<'r>(&self, record: &'r FeedRecord) -> Option<&'r [u8]> {
        match self.format {
            Format::Har => record.har_entry.as_deref(),
            Format::JsonLines => Some(&record.line),
        }
    }

    fn newline(&self) -> &'static [u8] {
        match self.format {
            Format::Har => b"",
            Format::JsonLines => b"\n",
        }
    }

    /// Appends the record between the separator (JSON lines: before its newline) and the tail,
    /// keeping the file a complete document once the batch is written.
    fn append(&mut self, record: &Arc<FeedRecord>) -> io::Result<()> {
        let entry_len = self
            .entry(record)
            .ok_or_else(|| io::Error::other("no HAR entry was rendered for this record"))?
            .len();
        // A failure to write what the old file was owed does not cost this record its place.
        let earlier = self.recover();
        if self.file.is_none() {
            return Err(io::Error::other("trace file unavailable, will retry"));
        }
        // The separator goes only between entries.
        let separator = self.entries > 0;
        let separator_len = if separator {
            self.format.separator().len()
        } else {
            0
        };
        let len = separator_len + entry_len + self.newline().len();
        let tail = self.format.tail().len();
        let grows_to = self.size + len as u64;
        let empty = (self.format.head().len() + tail) as u64;
        if self.rotate_bytes > 0 && self.size > empty && grows_to > self.rotate_bytes {
            self.write_pending()?;
            self.rotate()?;
            return self.append(record);
        }
        let offset = self.size - tail as u64;
        if self.pending.is_empty() {
            self.pending_at = offset;
        }
        self.pending.push(Pending {
            record: Arc::clone(record),
            separator,
        });
        self.pending_len += len;
        self.size = offset + (len + tail) as u64;
        self.entries += 1;
        if self.pending_len >= FLUSH_AT {
            self.write_pending()?;
        }
        earlier
    }

    /// Writes the gathered records and the tail with one positioned write over the old tail
    /// (a batch of more than `IOV_MAX` parts: one per `IOV_MAX`, each ending in the tail): the
    /// file is a complete document before and after each write, and only a crash inside one
    /// leaves a torn tail. On failure the batch is lost and the file is reopened later.
    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = match &self.file {
            Some(file) => self.write_parts(file),
            None => Err(io::Error::other("trace file unavailable, will retry")),
        };
        self.pending.clear();
        self.pending_len = 0;
        if written.is_err() {
            self.broken();
        }
        written
    }

    fn write_parts(&self, file: &File) -> io::Result<()> {
        let (separator, newline) = (self.format.separator().as_bytes(), self.newline());
        let tail = self.format.tail().as_bytes();
        let mut records = self.pending.iter().peekable();
        let mut at = self.pending_at;
        while records.peek().is_some() {
            let mut parts = Parts {
                slices: Vec::with_capacity((records.len() * 3 + 1).min(IOV_MAX)),
                len: 0,
            };
            // At most three parts per record, and room for the tail.
            while let Some(pending) = records.next_if(|_| parts.slices.len() + 4 <= IOV_MAX) {
                if pending.separator {
                    parts.push(separator);
                }
                // Every pending record has its entry: `append` checked.
                parts.push(self.entry(&pending.record).unwrap_or_default());
                parts.push(newline);
            }
            let records_len = parts.len;
            parts.push(tail);
            write_all_vectored_at(file, &mut parts.slices, at)?;
            at += records_len as u64;
        }
        Ok(())
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

    fn write(&mut self, record: &Arc<FeedRecord>) -> io::Result<()> {
        self.append(record)
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

/// The slices of one `pwritev` and their length. (An array of `IOV_MAX` slices on the stack
/// instead cost more to clear for each batch, 28k instructions per record, than this one
/// allocation per batch.)
struct Parts<'a> {
    slices: Vec<IoSlice<'a>>,
    len: usize,
}

impl<'a> Parts<'a> {
    fn push(&mut self, bytes: &'a [u8]) {
        if !bytes.is_empty() {
            self.slices.push(IoSlice::new(bytes));
            self.len += bytes.len();
        }
    }
}

/// Writes all of `slices` at `offset`, as `write_all_at` does for one slice.
fn write_all_vectored_at(
    file: &File,
    mut slices: &mut [IoSlice<'_>],
    mut offset: u64,
) -> io::Result<()> {
    while !slices.is_empty() {
        match pwritev(file, slices, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                offset += n as u64;
                IoSlice::advance_slices(&mut slices, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `pwritev(2)` of at most [`IOV_MAX`] of the slices; how many bytes it wrote.
fn pwritev(file: &File, slices: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
    let count = slices.len().min(IOV_MAX) as libc::c_int;
    let offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::other("trace file offset out of range"))?;
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on unix (std guarantees it), the
    // slices outlive the call, and `count` is at most their number.
    let written = unsafe { libc::pwritev(file.as_raw_fd(), slices.as_ptr().cast(), count, offset) };
    usize::try_from(written).map_err(|_| io::Error::last_os_error())
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
