//! The JSON serializer for trace records: compact JSON, byte for byte what
//! `serde_json::to_writer` writes (the tests compare the two), for much less work.
//!
//! A trace record is mostly strings (header values, URLs, body text) and a hundred field names.
//! serde_json escapes every string, field names included, one byte at a time and writes each
//! run between two escapes separately. Here strings are checked eight bytes at a time, short
//! ones copied without a call to `memcpy`, and field names, which the derived `Serialize` impls
//! pass as literals, checked and copied at compile time. Numbers are left to serde_json so that
//! they are formatted exactly as before. A record's long strings (its bodies) are escaped once
//! and copied into its second rendering (see [`Memo`]); a JSON body comes escaped already (see
//! [`Str`]).
//!
//! The JSON line and the HAR entry are written by hand through [`Out`], which escapes strings
//! the same way and writes integers and milliseconds itself, the same bytes again; the views'
//! derived `Serialize`, through [`write`], stays the definition the tests compare with.

use std::fmt::{self, Display};
use std::time::Duration;

#[cfg(test)]
use serde::ser;
use serde::ser::{Serialize, Serializer};

/// A value that cannot be written as JSON (a map key that is not a string, a failing
/// `Serialize` impl).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

#[cfg(test)]
impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Appends `value` to `out` as compact JSON: the views' derived `Serialize` through our
/// escaping, the definition that the hand-written `jsonl::Line::write` and `har::Entry::write`
/// are tested against.
#[cfg(test)]
pub fn write<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
    memo: &mut Memo,
) -> Result<(), Error> {
    value.serialize(&mut Writer {
        out,
        memo,
        verbatim: false,
    })
}

/// A string to write: text, or text escaped already (a JSON body's, escaped by the pass that
/// redacted it, see `json_body`), which [`write`] copies between its quotes as it is.
#[derive(Debug, Clone, Copy)]
pub enum Str<'a> {
    Plain(&'a str),
    /// The inside of a JSON string, escaped exactly as [`write`] escapes it (UTF-8).
    Escaped(&'a [u8]),
}

/// The name [`Str::Escaped`] serializes under, for [`write`] to recognise it.
const ESCAPED: &str = "$provproxy::json_out::Escaped";

impl Serialize for Str<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Str::Plain(text) => serializer.serialize_str(text),
            // Any other serializer (serde_json) reads the text unescaped and escapes it itself.
            Str::Escaped(text) => {
                let text = std::str::from_utf8(text).map_err(serde::ser::Error::custom)?;
                serializer.serialize_newtype_struct(ESCAPED, &Unescaped(text))
            }
        }
    }
}

/// Text escaped as the inside of a JSON string: displayed as the text it stands for, and with
/// `{:#}` as it is (how [`write`] takes it through `collect_str`).
#[derive(Debug, Clone, Copy)]
pub struct Unescaped<'a>(pub &'a str);

impl Display for Unescaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f.write_str(self.0);
        }
        let mut rest = self.0;
        while let Some(backslash) = rest.find('\\') {
            f.write_str(&rest[..backslash])?;
            let escape = &rest[backslash + 1..];
            // What `escape` writes: a control character as `\u00xx`, the others after a `\`.
            let (decoded, len) = match escape.as_bytes().first() {
                Some(b'u') => {
                    let code = escape
                        .get(1..5)
                        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                        .and_then(char::from_u32)
                        .ok_or(fmt::Error)?;
                    (code, 5)
                }
                Some(b'b') => ('\u{8}', 1),
                Some(b't') => ('\t', 1),
                Some(b'n') => ('\n', 1),
                Some(b'f') => ('\u{c}', 1),
                Some(b'r') => ('\r', 1),
                Some(&other) if other.is_ascii() => (char::from(other), 1),
                _ => return Err(fmt::Error),
            };
            fmt::Write::write_char(f, decoded)?;
            rest = &escape[len..];
        }
        f.write_str(rest)
    }
}

impl Serialize for Unescaped<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Strings at least this long are remembered escaped; a shorter one costs about as much to
/// compare as to escape again.
const MEMO_MIN: usize = 256;
/// A request body and a response body.
const MEMO_SLOTS: usize = 2;

/// The long body texts of one record, escaped, as [`Out::text`] wrote them: the JSON line and
/// the HAR entry of a record both hold its bodies, which are most of its bytes. (The other
/// strings the two share, the entry copies from the line; see `har::Entry::write_from_line`.)
/// Entries are found by content, so a stale one is never used in place of another string;
/// [`Memo::clear`] between records keeps the lookups short.
#[derive(Debug, Default)]
pub struct Memo {
    slots: Vec<Slot>,
    used: usize,
}

#[derive(Debug, Default)]
struct Slot {
    text: Vec<u8>,
    escaped: Vec<u8>,
}

impl Memo {
    /// Forgets the strings but keeps the buffers.
    pub fn clear(&mut self) {
        self.used = 0;
    }

    fn find(&self, text: &str) -> Option<&[u8]> {
        self.slots[..self.used]
            .iter()
            .find(|slot| slot.text == text.as_bytes())
            .map(|slot| slot.escaped.as_slice())
    }

    fn remember(&mut self, text: &str, escaped: &[u8]) {
        if self.used == MEMO_SLOTS {
            return;
        }
        if self.used == self.slots.len() {
            self.slots.push(Slot::default());
        }
        let slot = &mut self.slots[self.used];
        slot.text.clear();
        slot.text.extend_from_slice(text.as_bytes());
        slot.escaped.clear();
        slot.escaped.extend_from_slice(escaped);
        self.used += 1;
    }
}

/// How many leading bytes of `bytes` stand for themselves inside a JSON string: all but `"`,
/// `\` and control characters.
///
/// Eight bytes are looked at at once, and a string's last bytes as the word that ends it, so a
/// plain string of 8 bytes or more is never read byte by byte.
fn plain_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(chunk) = bytes[at..].first_chunk::<8>() {
        if let Some(first) = first_special(chunk) {
            return at + first;
        }
        at += 8;
    }
    if at == bytes.len() {
        return at;
    }
    if let Some(last) = bytes.last_chunk::<8>() {
        // The bytes this word shares with the ones already read are plain.
        let start = bytes.len() - 8;
        return first_special(last).map_or(bytes.len(), |first| start + first);
    }
    bytes
        .iter()
        .position(|&b| matches!(b, b'"' | b'\\' | 0..=0x1f))
        .unwrap_or(bytes.len())
}

/// The index of the first `"`, `\` or control character in 8 bytes.
fn first_special(chunk: &[u8; 8]) -> Option<usize> {
    let flags = special_flags(u64::from_le_bytes(*chunk));
    (flags != 0).then(|| flags.trailing_zeros() as usize / 8)
}

/// The high bit of every byte that is `"`, `\` or a control character, and maybe of bytes
/// above such a byte (little-endian: after it). These are the bit tricks for "a byte is zero"
/// and "a byte is below n"; a borrow only runs upwards from a byte that matches, so the lowest
/// flag is exact.
fn special_flags(word: u64) -> u64 {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    ((quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | (word.wrapping_sub(ONES * 0x20) & !word))
        & HIGH
}

/// [`special_flags`] for 4 bytes.
fn special_flags4(word: u32) -> u32 {
    const ONES: u32 = u32::from_le_bytes([0x01; 4]);
    const HIGH: u32 = u32::from_le_bytes([0x80; 4]);
    let quote = word ^ (ONES * u32::from(b'"'));
    let backslash = word ^ (ONES * u32::from(b'\\'));
    ((quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | (word.wrapping_sub(ONES * 0x20) & !word))
        & HIGH
}

/// `s` as a JSON string, through `memo` when it is long (see [`Memo`]).
fn remembered_string(out: &mut Vec<u8>, s: &str, memo: &mut Memo) {
    if s.len() < MEMO_MIN {
        string(out, s.as_bytes());
    } else if let Some(escaped) = memo.find(s) {
        out.extend_from_slice(escaped);
    } else {
        let start = out.len();
        string(out, s.as_bytes());
        memo.remember(s, &out[start..]);
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it: the two-character forms for
/// `\b \t \n \f \r " \`, `\u00xx` for the other control characters, all else as it is.
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() <= SHORT && short_is_plain(bytes) {
        let mut buf = [b'"'; SHORT + 2];
        place(&mut buf[1..], bytes);
        buf[bytes.len() + 1] = b'"';
        append(out, &buf, bytes.len() + 2);
        return;
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    escaped(out, bytes);
    out.push(b'"');
}

/// Strings up to this long (most of a record's: names, short values, every field name) go
/// through a buffer on the stack of a fixed size: read and written as words that overlap and
/// appended as one block, for them a call to `memcpy` costs more than the rest of the work.
const SHORT: usize = 32;

/// Whether a string of at most [`SHORT`] bytes needs no escape, read as words that overlap.
fn short_is_plain(bytes: &[u8]) -> bool {
    let word = |at: usize| special_flags(u64::from_le_bytes(bytes_at(bytes, at)));
    let len = bytes.len();
    if len >= 16 {
        word(0) | word(8) | word(len - 16) | word(len - 8) == 0
    } else if len >= 8 {
        word(0) | word(len - 8) == 0
    } else if let (Some(head), Some(tail)) = (bytes.first_chunk::<4>(), bytes.last_chunk()) {
        special_flags4(u32::from_le_bytes(*head)) | special_flags4(u32::from_le_bytes(*tail)) == 0
    } else {
        !bytes.iter().any(|b| matches!(b, b'"' | b'\\' | 0..=0x1f))
    }
}

/// The 8 bytes of `bytes` from `at`, which the caller knows are there.
fn bytes_at(bytes: &[u8], at: usize) -> [u8; 8] {
    bytes
        .get(at..at + 8)
        .and_then(|word| word.first_chunk::<8>())
        .copied()
        .unwrap_or_default()
}

/// Copies `src`, at most [`SHORT`] bytes, to the start of `dst` as words that overlap.
fn place(dst: &mut [u8], src: &[u8]) {
    let len = src.len();
    if let (Some(head), Some(tail)) = (src.first_chunk::<16>(), src.last_chunk::<16>()) {
        dst[..16].copy_from_slice(head);
        dst[len - 16..len].copy_from_slice(tail);
    } else if let (Some(head), Some(tail)) = (src.first_chunk::<8>(), src.last_chunk::<8>()) {
        dst[..8].copy_from_slice(head);
        dst[len - 8..len].copy_from_slice(tail);
    } else if let (Some(head), Some(tail)) = (src.first_chunk::<4>(), src.last_chunk::<4>()) {
        dst[..4].copy_from_slice(head);
        dst[len - 4..len].copy_from_slice(tail);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// Appends the first `len` bytes of `buf`: all of it as a block of a fixed size, then cut.
fn append<const N: usize>(out: &mut Vec<u8>, buf: &[u8; N], len: usize) {
    let at = out.len();
    out.extend_from_slice(buf);
    out.truncate(at + len);
}

/// Appends `bytes`; up to [`SHORT`] of them without `memcpy` (see [`place`]).
fn copy(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() > SHORT {
        out.extend_from_slice(bytes);
        return;
    }
    let mut buf = [0u8; SHORT];
    place(&mut buf, bytes);
    append(out, &buf, bytes.len());
}

/// The contents of a string that is long or needs escapes. Up to the first escape it is
/// copied as it is; from there a block at a time is escaped into a buffer on the stack and
/// appended with one copy: bytes that need no escape are moved a word at a time, and a body's
/// text has an escape every few bytes, which would otherwise cost a copy each.
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const BLOCK: usize = 64;
    let plain = plain_len(bytes);
    out.extend_from_slice(&bytes[..plain]);
    let bytes = &bytes[plain..];
    if bytes.is_empty() {
        return;
    }
    // Every byte may become six (`\u001f`); a word is written whole even when only its first
    // bytes are kept.
    let mut buf = [0u8; BLOCK * 6 + 8];
    for block in bytes.chunks(BLOCK) {
        let mut len = 0;
        let mut rest = block;
        while let Some(word) = rest.first_chunk::<8>() {
            buf[len..len + 8].copy_from_slice(word);
            let flags = special_flags(u64::from_le_bytes(*word));
            if flags == 0 {
                len += 8;
                rest = &rest[8..];
                continue;
            }
            let plain = flags.trailing_zeros() as usize / 8;
            len += plain;
            len += escape(&mut buf[len..], rest[plain]);
            rest = &rest[plain + 1..];
        }
        for &byte in rest {
            if matches!(byte, b'"' | b'\\' | 0..=0x1f) {
                len += escape(&mut buf[len..], byte);
            } else {
                buf[len] = byte;
                len += 1;
            }
        }
        out.extend_from_slice(&buf[..len]);
    }
}

/// Writes the escape of `byte` at the start of `to`, and says how long it is.
fn escape(to: &mut [u8], byte: u8) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x09 => b't',
        0x0a => b'n',
        0x0c => b'f',
        0x0d => b'r',
        _ => {
            to[..6].copy_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
            return 6;
        }
    };
    to[..2].copy_from_slice(&[b'\\', short]);
    2
}

/// Where a record is written by hand (its JSON line, its HAR entry): keys and punctuation are
/// the caller's literals, strings are escaped as [`write`] escapes them (long ones through the
/// record's [`Memo`]), numbers read as serde_json writes them. Going straight to the escaping
/// saves the serializer's dispatch for each of the record's few dozen strings.
pub struct Out<'a> {
    out: &'a mut Vec<u8>,
    memo: &'a mut Memo,
}

impl<'a> Out<'a> {
    pub fn new(out: &'a mut Vec<u8>, memo: &'a mut Memo) -> Self {
        Out { out, memo }
    }

    /// Where the next byte goes in the output, the caller's bytes before it counted.
    pub fn position(&self) -> usize {
        self.out.len()
    }

    /// Bytes written already, such as a string escaped for another rendering of the record.
    pub fn copy(&mut self, bytes: &[u8]) {
        copy(self.out, bytes);
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub fn str(&mut self, s: &str) {
        string(self.out, s.as_bytes());
    }

    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.raw(b"null"),
        }
    }

    /// Text known to be ASCII (a timestamp, an address): escaped like any string, without the
    /// UTF-8 check that a `&str` of it would cost.
    pub fn ascii(&mut self, text: &[u8]) {
        debug_assert!(text.is_ascii());
        string(self.out, text);
    }

    /// Text that may come escaped already (see [`Str`]).
    /// A body's text (or its base64), through the memo when it is long.
    pub fn text(&mut self, text: Str<'_>) {
        match text {
            Str::Plain(text) => remembered_string(self.out, text, self.memo),
            Str::Escaped(text) => {
                self.out.reserve(text.len() + 2);
                self.out.push(b'"');
                self.out.extend_from_slice(text);
                self.out.push(b'"');
            }
        }
    }

    pub fn bool(&mut self, value: bool) {
        self.raw(if value { b"true" } else { b"false" });
    }

    pub fn uint(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let len = n.checked_ilog10().map_or(1, |log| log as usize + 1);
        decimal(&mut digits[..len], n);
        append(self.out, &digits, len);
    }

    pub fn int(&mut self, n: i64) {
        if n < 0 {
            self.raw(b"-");
        }
        self.uint(n.unsigned_abs());
    }

    pub fn float(&mut self, value: f64) -> Result<(), Error> {
        serde_json::to_writer(&mut *self.out, &value).map_err(|e| Error(e.to_string()))
    }

    /// `d` in milliseconds as [`ms`] has it, written from the duration's integers: its decimal
    /// is the float's shortest form, which is what serde_json writes, at a third of the cost.
    pub fn ms(&mut self, d: Duration) -> Result<(), Error> {
        let nanos = d.as_nanos();
        if nanos == 0 {
            self.raw(b"0.0");
            return Ok(());
        }
        // From 0.01 ms, where serde_json writes no exponent, to 15 significant digits, which
        // a decimal needs at most to be the shortest form of its nearest float.
        let Ok(nanos @ 10_000..1_000_000_000_000_000) = u64::try_from(nanos) else {
            return self.float(ms(d));
        };
        self.uint(nanos / 1_000_000);
        let mut digits = *b".000000";
        decimal(&mut digits[1..], nanos % 1_000_000);
        // Without trailing zeros, but for the one after the point (`12.0`).
        let mut len = digits.len();
        while len > 2 && digits[len - 1] == b'0' {
            len -= 1;
        }
        append(self.out, &digits, len);
        Ok(())
    }

    /// `[` and `]` around the items, with commas between.
    pub fn list<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        self.raw(b"[");
        for (i, value) in items.iter().enumerate() {
            if i > 0 {
                self.raw(b",");
            }
            item(self, value);
        }
        self.raw(b"]");
    }

    pub fn strings(&mut self, items: &[impl AsRef<str>]) {
        self.list(items, |w, s| w.str(s.as_ref()));
    }
}

/// Fills `digits` with the last `digits.len()` decimal digits of `n`, zero-padded: two at a
/// time, from a table.
fn decimal(digits: &mut [u8], mut n: u64) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut end = digits.len();
    while end >= 2 {
        // The remainder is below 100.
        let pair = (n % 100) as usize * 2;
        digits[end - 2..end].copy_from_slice(&PAIRS[pair..pair + 2]);
        n /= 100;
        end -= 2;
    }
    if end == 1 {
        // The remainder is below 10.
        digits[0] = b'0' + (n % 10) as u8;
    }
}

/// A duration in milliseconds, as trace records show it: the float nearest to the decimal of
/// its nanoseconds (six decimals at most, `0.418913`), so that the text is that decimal.
pub fn ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

#[cfg(test)]
struct Writer<'b> {
    out: &'b mut Vec<u8>,
    memo: &'b mut Memo,
    /// Set while an [`Str::Escaped`] is written: its text comes through `collect_str`.
    verbatim: bool,
}

#[cfg(test)]
/// `out` as a `fmt::Write`, for text escaped already.
struct Verbatim<'b>(&'b mut Vec<u8>);

#[cfg(test)]
impl fmt::Write for Verbatim<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
impl<'b> Writer<'b> {
    /// Numbers go through serde_json, so that they read exactly as before.
    fn number(&mut self, value: impl Serialize) -> Result<(), Error> {
        serde_json::to_writer(&mut *self.out, &value).map_err(|e| Error(e.to_string()))
    }

    /// `{"variant":` before the content of an enum variant with data.
    fn variant(&mut self, variant: &str) {
        self.out.push(b'{');
        string(self.out, variant.as_bytes());
        self.out.push(b':');
    }

    fn compound<'s>(&'s mut self, open: u8, close: &'static [u8]) -> Compound<'s, 'b> {
        self.out.push(open);
        Compound {
            writer: self,
            first: true,
            close,
        }
    }
}

#[cfg(test)]
impl<'s, 'b> ser::Serializer for &'s mut Writer<'b> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'s, 'b>;
    type SerializeTuple = Compound<'s, 'b>;
    type SerializeTupleStruct = Compound<'s, 'b>;
    type SerializeTupleVariant = Compound<'s, 'b>;
    type SerializeMap = Compound<'s, 'b>;
    type SerializeStruct = Compound<'s, 'b>;
    type SerializeStructVariant = Compound<'s, 'b>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        string(self.out, v.encode_utf8(&mut [0; 4]).as_bytes());
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        remembered_string(self.out, v, self.memo);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        use ser::SerializeSeq as _;
        let mut seq = self.compound(b'[', b"]");
        for byte in v {
            seq.serialize_element(byte)?;
        }
        seq.end()
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        if name == ESCAPED {
            self.verbatim = true;
            let written = value.serialize(&mut *self);
            self.verbatim = false;
            return written;
        }
        value.serialize(self)
    }

    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<(), Error> {
        if !self.verbatim {
            return self.serialize_str(&value.to_string());
        }
        self.verbatim = false;
        self.out.push(b'"');
        fmt::Write::write_fmt(&mut Verbatim(self.out), format_args!("{value:#}"))
            .map_err(|e| Error(e.to_string()))?;
        self.out.push(b'"');
        Ok(())
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.variant(variant);
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'s, 'b>, Error> {
        Ok(self.compound(b'[', b"]"))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Compound<'s, 'b>, Error> {
        Ok(self.compound(b'[', b"]"))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'b>, Error> {
        Ok(self.compound(b'[', b"]"))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'b>, Error> {
        self.variant(variant);
        Ok(self.compound(b'[', b"]}"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'s, 'b>, Error> {
        Ok(self.compound(b'{', b"}"))
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'s, 'b>, Error> {
        Ok(self.compound(b'{', b"}"))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'b>, Error> {
        self.variant(variant);
        Ok(self.compound(b'{', b"}}"))
    }
}

/// An array or object being written: a comma before every element but the first.
#[cfg(test)]
struct Compound<'s, 'b> {
    writer: &'s mut Writer<'b>,
    first: bool,
    close: &'static [u8],
}

#[cfg(test)]
impl Compound<'_, '_> {
    #[inline(always)]
    fn comma(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.writer.out.push(b',');
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.writer)
    }

    /// Always inlined into the `Serialize` impls that serde derives, where `key` is a literal:
    /// the compiler then checks it for escapes and copies it at compile time, and a field name
    /// costs a few stores. A record has a hundred.
    #[inline(always)]
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        self.comma();
        let out = &mut *self.writer.out;
        let key = key.as_bytes();
        if key.iter().all(|b| !matches!(b, b'"' | b'\\' | 0..=0x1f)) {
            out.reserve(key.len() + 3);
            out.push(b'"');
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
        } else {
            out.push(b'"');
            escaped(out, key);
            out.extend_from_slice(b"\":");
        }
        value.serialize(&mut *self.writer)
    }

    fn end(self) -> Result<(), Error> {
        self.writer.out.extend_from_slice(self.close);
        Ok(())
    }
}

#[cfg(test)]
impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

#[cfg(test)]
impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

#[cfg(test)]
impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

#[cfg(test)]
impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

#[cfg(test)]
impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        let at = self.writer.out.len() + usize::from(!self.first);
        self.element(key)?;
        // JSON object keys are strings; serde_json would quote a number, we need neither.
        if self.writer.out.get(at) != Some(&b'"') {
            return Err(Error("a map key that is not a string".into()));
        }
        self.writer.out.push(b':');
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.writer)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

#[cfg(test)]
impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    #[inline(always)]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

#[cfg(test)]
impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    #[inline(always)]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::*;

    fn ours<T: Serialize + ?Sized>(value: &T) -> String {
        let mut out = Vec::new();
        write(&mut out, value, &mut Memo::default()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut rng = crate::trace::tests::Xorshift(0x9e37_79b9_7f4a_7c15);
        let mut random = move || rng.next();
        let pieces = [
            "a", "bcdefgh", "\"", "\\", "\n", "\t", "\r", "\u{8}", "\u{c}", "\u{0}", "\u{1f}",
            "\u{7f}", "é", "\u{2028}", "😀", "/", " ", "12345678",
        ];
        for _ in 0..5000 {
            let len = (random() % 40) as usize;
            let s: String = (0..len)
                .map(|_| pieces[(random() % pieces.len() as u64) as usize])
                .collect();
            assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
            let plain = plain_len(s.as_bytes());
            assert!(s.as_bytes()[..plain]
                .iter()
                .all(|b| !matches!(b, b'"' | b'\\' | 0..=0x1f)));
            assert!(s
                .as_bytes()
                .get(plain)
                .is_none_or(|b| matches!(b, b'"' | b'\\' | 0..=0x1f)));
        }
        for byte in 0..=0x7fu8 {
            let s = char::from(byte).to_string();
            assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "{byte:#x}");
        }
        // Every length around the word sizes, with one byte to escape at every place.
        for len in 0..=24 {
            let plain = "abcdefghijklmnopqrstuvwxyz"[..len].to_owned();
            assert_eq!(ours(&plain), serde_json::to_string(&plain).unwrap());
            for at in 0..len {
                for special in ["\"", "\\", "\n", "\u{1f}", "\u{0}"] {
                    let mut s = plain.clone();
                    s.replace_range(at..=at, special);
                    assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    /// A JSON body inside a JSON string has an escape every few bytes, in blocks of any length.
    #[test]
    fn long_text_dense_with_escapes_is_escaped_exactly_as_serde_json_escapes_it() {
        let body = r#"{"schemas":["urn:scim:User"],"name":{"givenName":"Barbara"},"x":"a\"b\\c"}"#;
        let pieces = [
            body,
            "\n",
            "\u{1}",
            " ",
            "é",
            "\"\"\"",
            "12345678901234567890",
        ];
        let mut rng = crate::trace::tests::Xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let state = rng.next();
            let len = (state % 24) as usize;
            let s: String = (0..len)
                .map(|i| pieces[(state >> (i % 60)) as usize % pieces.len()])
                .collect();
            assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(i64, f64),
        Struct { a: Option<bool>, b: char },
    }

    #[derive(Serialize)]
    struct Everything<'a> {
        #[serde(rename = "_odd \"key\"")]
        odd: (),
        numbers: (i8, u16, i32, u64, i128, u128, f32, f64, f64, f64),
        integers: [i64; 6],
        text: &'a str,
        bytes: &'a [u8],
        shapes: Vec<Shape>,
        map: BTreeMap<&'a str, Vec<Option<u8>>>,
        empty: (Vec<u8>, BTreeMap<String, u8>),
    }

    #[test]
    fn every_kind_of_value_is_written_as_serde_json_writes_it() {
        let mut map = BTreeMap::new();
        map.insert("k\"1", vec![Some(1), None]);
        map.insert("", vec![]);
        let value = Everything {
            odd: (),
            numbers: (
                -8,
                16,
                -32,
                u64::MAX,
                i128::MIN,
                u128::MAX,
                1.5,
                12.0,
                f64::NAN,
                -0.000_123,
            ),
            integers: [0, -1, 9, 10, i64::MIN, i64::MAX],
            text: "line\nbreak",
            bytes: &[0, 255],
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(-1, 1e300),
                Shape::Struct {
                    a: Some(true),
                    b: '"',
                },
            ],
            map,
            empty: (Vec::new(), BTreeMap::new()),
        };
        assert_eq!(ours(&value), serde_json::to_string(&value).unwrap());
    }

    /// Milliseconds from a duration's integers read exactly as the float the views hold, and
    /// as the decimal of the nanoseconds wherever serde_json writes no exponent.
    #[test]
    fn milliseconds_are_written_as_serde_json_writes_the_float() {
        let mut state = 0x6a09_e667_f3bc_c909u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut durations: Vec<Duration> = [
            0,
            1,
            9_999,
            10_000,
            10_001,
            999_999,
            1_000_000,
            1_000_001,
            12_000_000,
            41_341_329,
            999_999_999_999_999,
            1_000_000_000_000_000,
            u64::MAX,
        ]
        .into_iter()
        .map(Duration::from_nanos)
        .collect();
        for _ in 0..200_000 {
            // Every magnitude from a nanosecond to centuries, and whole milliseconds.
            let nanos = random() >> (random() % 64);
            durations.push(Duration::from_nanos(nanos));
            durations.push(Duration::from_millis(nanos % 100_000_000));
        }
        durations.push(Duration::MAX);
        for d in durations {
            let mut ours = Vec::new();
            Out::new(&mut ours, &mut Memo::default()).ms(d).unwrap();
            let float = serde_json::to_string(&ms(d)).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), float, "{d:?}");
            let nanos = d.as_nanos();
            if (10_000..1_000_000_000_000_000).contains(&nanos) {
                let decimal = format!("{}.{:06}", nanos / 1_000_000, nanos % 1_000_000);
                let trimmed = decimal.trim_end_matches('0');
                assert_eq!(float.trim_end_matches(".0"), trimmed.trim_end_matches('.'));
            }
        }
    }

    /// What [`Out`] writes through its buffer of a fixed size, at every length around it.
    #[test]
    fn out_writes_strings_copies_and_integers_of_every_length_exactly() {
        let alphabet = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ";
        for len in 0..=alphabet.len() {
            let plain = &alphabet[..len];
            let (mut written, mut memo) = (Vec::new(), Memo::default());
            let mut out = Out::new(&mut written, &mut memo);
            out.str(plain);
            out.copy(plain.as_bytes());
            assert_eq!(
                written,
                format!("{}{plain}", serde_json::to_string(plain).unwrap()).into_bytes()
            );
            for at in 0..len {
                let mut s = plain.to_owned();
                s.replace_range(at..=at, "\"");
                let mut written = Vec::new();
                Out::new(&mut written, &mut Memo::default()).str(&s);
                assert_eq!(written, serde_json::to_vec(&s).unwrap(), "{s:?}");
            }
        }
        let mut n = 1u64;
        for _ in 0..20 {
            for value in [n - 1, n, n.saturating_add(1), n / 7 * 3, u64::MAX / n] {
                let signed = i64::try_from(value / 2).unwrap_or(i64::MAX);
                let (mut written, mut memo) = (Vec::new(), Memo::default());
                let mut out = Out::new(&mut written, &mut memo);
                out.uint(value);
                out.int(-signed);
                out.int(signed);
                assert_eq!(written, format!("{value}{}{signed}", -signed).into_bytes());
            }
            n = n.saturating_mul(10);
        }
    }

    #[test]
    fn a_map_key_that_is_not_a_string_is_an_error() {
        let mut map = BTreeMap::new();
        map.insert(1, 2);
        assert!(write(&mut Vec::new(), &map, &mut Memo::default()).is_err());
    }

    #[test]
    fn a_long_string_is_escaped_once_and_copied_while_remembered() {
        let long = |c: char| format!("{c}\"{}\"\n", "x".repeat(MEMO_MIN));
        let (a, b, c) = (long('a'), long('b'), long('c'));
        let mut memo = Memo::default();
        let mut first = Vec::new();
        write(&mut first, &[&a, &b, &c], &mut memo).unwrap();
        // Two slots: `a` and `b` are remembered, `c` is not. Escaped, each has two quotes
        // around it, and a backslash before two quotes and for the newline.
        assert_eq!(memo.find(&a).map(<[u8]>::len), Some(a.len() + 5));
        assert!(memo.find(&b).is_some() && memo.find(&c).is_none());
        let mut second = Vec::new();
        write(&mut second, &[&c, &b, &a], &mut memo).unwrap();
        assert_eq!(second, serde_json::to_vec(&[&c, &b, &a]).unwrap());
        memo.clear();
        assert!(memo.find(&a).is_none());
        let mut third = Vec::new();
        write(&mut third, &[&b, &a], &mut memo).unwrap();
        assert_eq!(third, serde_json::to_vec(&[&b, &a]).unwrap());
    }

    /// The memo's two slots are for the bodies: a long URL or header value written before them
    /// (which the HAR entry copies from the line instead) does not take one.
    #[test]
    fn only_body_texts_take_the_memos_slots() {
        let url = format!("/scim/v2/Users?filter={}", "x".repeat(MEMO_MIN));
        let (request, response) = ("q".repeat(MEMO_MIN), "r\"".repeat(MEMO_MIN));
        let (mut line, mut memo) = (Vec::new(), Memo::default());
        let mut out = Out::new(&mut line, &mut memo);
        out.str(&url);
        out.text(Str::Plain(&request));
        out.text(Str::Plain(&response));
        assert!(memo.find(&url).is_none());
        assert!(memo.find(&request).is_some() && memo.find(&response).is_some());
        let expected = [&url, &request, &response]
            .map(|s| serde_json::to_string(s).unwrap())
            .concat();
        assert_eq!(String::from_utf8(line).unwrap(), expected);
    }
}
