//! JSON bodies redacted in one pass over their text, without building a tree.
//!
//! The body is kept byte for byte as it came (key order, spacing, escapes) and only the values
//! that must not be shown are replaced by `"[REDACTED]"`. The result is escaped for the JSON
//! string that the trace writes it into (the JSON line's and the HAR entry's `text`), so the
//! writer copies the text instead of reading it once more. The pass is as strict as serde_json's
//! parser: the same grammar, string escapes checked (surrogates paired), the same nesting limit
//! and nothing but whitespace after the value. Anything else is an error, so a body is either
//! read the way every JSON reader reads it or withheld whole by the caller. (One difference: a
//! number too large for an `f64`, which is valid JSON, is kept as it is; serde_json refuses it.)
//!
//! The body's quotes, backslashes and control characters are marked first, a block of bytes at
//! a time ([`json_scan`]): the parser finds the end of each string from those marks, and notes
//! which values to replace. Only once the body has parsed is the text written out, escaped: in
//! valid JSON the marked bytes are exactly the ones to escape (a control character can only be
//! the `\n`, `\r` or `\t` between tokens), so the writer copies the runs between marks.

use std::borrow::Cow;

use super::json_scan::{self, Specials, STACK_WORDS};
use super::redact::{scim_attribute, Redactor, REDACTED};

/// serde_json refuses the 128th level of nesting; so do we, so that a body deep enough to stop
/// a reader is withheld rather than passed on.
const MAX_DEPTH: u32 = 127;

/// The quote around a replaced value, escaped.
const QUOTE: &[u8] = b"\\\"";

/// The body is not JSON that could be redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// What a pass does with the values it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Replaces the value of every secret field at any depth, and the `value` of an object whose
    /// `path` or `name` names a secret attribute (a SCIM patch operation).
    Secrets,
    /// A token endpoint's body: the values of public fields are kept, every other value is
    /// replaced, at any depth of arrays.
    PublicOnly,
    /// Checks the syntax and keeps the text as it is.
    Keep,
}

/// `text` with the values `mode` selects replaced, escaped as the inside of a JSON string exactly
/// as `json_out` escapes a string (see `json_out::Str::Escaped`).
pub fn redact(text: &str, redactor: &Redactor, mode: Mode) -> Result<Vec<u8>, Invalid> {
    let (mut stack, mut heap) = ([0; STACK_WORDS], Vec::new());
    let specials = json_scan::specials(text.as_bytes(), &mut stack, &mut heap);
    let mut pass = Pass::new(text, specials.words, redactor);
    pass.document(mode)?;
    escaped(text.as_bytes(), specials, &pass.replaced)
}

/// Whether `bytes` is one JSON document that [`redact`] accepts.
pub fn is_json(bytes: &[u8], redactor: &Redactor) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| {
        let (mut stack, mut heap) = ([0; STACK_WORDS], Vec::new());
        let specials = json_scan::specials(bytes, &mut stack, &mut heap);
        Pass::new(text, specials.words, redactor)
            .document(Mode::Keep)
            .is_ok()
    })
}

/// Room past the end of the output that a step of [`escape_into`] may write over: a run of up
/// to 16 bytes is copied as 16, and its escape after it.
const SLACK: usize = 18;

/// `bytes`, a valid JSON text whose special bytes are marked in `specials`, escaped for a JSON
/// string, with each of the `replaced` spans (in order, apart) written as `"[REDACTED]"`.
fn escaped(
    bytes: &[u8],
    specials: Specials<'_>,
    replaced: &[(usize, usize)],
) -> Result<Vec<u8>, Invalid> {
    // Without a control character (a compact body, the usual one), every marked byte is a
    // quote or a backslash, escaped by a backslash before it: no byte to look up.
    if specials.controls {
        escaped_with(bytes, specials.words, replaced, escape_into)
    } else {
        escaped_with(bytes, specials.words, replaced, backslash_into)
    }
}

/// [`escaped`], with the runs between replaced spans written by `escape_into`.
fn escaped_with(
    bytes: &[u8],
    specials: &[u64],
    replaced: &[(usize, usize)],
    escape_into: impl Fn(&mut [u8], usize, &[u8], &[u64], usize, usize) -> Result<usize, Invalid>,
) -> Result<Vec<u8>, Invalid> {
    let marked: usize = specials.iter().map(|w| w.count_ones() as usize).sum();
    // Each marked byte is written as two, each span as the replacement (it was one byte at
    // least).
    let replacement = QUOTE.len() + REDACTED.len() + QUOTE.len();
    let room = bytes.len() + marked + replaced.len() * replacement + SLACK;
    let mut out = vec![0; room];
    let (mut len, mut from) = (0, 0);
    for &(start, end) in replaced {
        len = escape_into(&mut out, len, bytes, specials, from, start)?;
        for piece in [QUOTE, REDACTED.as_bytes(), QUOTE] {
            out[len..len + piece.len()].copy_from_slice(piece);
            len += piece.len();
        }
        from = end;
    }
    len = escape_into(&mut out, len, bytes, specials, from, bytes.len())?;
    out.truncate(len);
    Ok(out)
}

/// The letter after the backslash that escapes each byte, or 0 for a byte that valid JSON
/// cannot hold where it is marked.
const LETTERS: [u8; 256] = {
    let mut letters = [0; 256];
    letters[b'"' as usize] = b'"';
    letters[b'\\' as usize] = b'\\';
    letters[b'\n' as usize] = b'n';
    letters[b'\r' as usize] = b'r';
    letters[b'\t' as usize] = b't';
    letters
};

/// Calls `each` with every position in `from..to` marked in `specials`, in order, until it
/// fails. Inlined into each escaping loop, so that the call is no call.
#[inline(always)]
fn each_mark(
    specials: &[u64],
    from: usize,
    to: usize,
    mut each: impl FnMut(usize) -> Result<(), Invalid>,
) -> Result<(), Invalid> {
    for index in from / 64..to.div_ceil(64) {
        let mut bits = specials.get(index).copied().unwrap_or(0);
        if index == from / 64 {
            bits &= u64::MAX << (from % 64);
        }
        if (index + 1) * 64 > to {
            bits &= !(u64::MAX << (to % 64));
        }
        while bits != 0 {
            each(index * 64 + bits.trailing_zeros() as usize)?;
            bits &= bits - 1;
        }
    }
    Ok(())
}

/// Writes `bytes[from..to]` escaped into `out` at `len`, and says where it ends. Every marked
/// byte is one of the five that valid JSON can hold there.
fn escape_into(
    out: &mut [u8],
    mut len: usize,
    bytes: &[u8],
    specials: &[u64],
    from: usize,
    to: usize,
) -> Result<usize, Invalid> {
    let mut copied = from;
    each_mark(specials, from, to, |at| {
        let letter = LETTERS[usize::from(bytes.get(at).copied().unwrap_or(0))];
        if letter == 0 {
            return Err(Invalid);
        }
        let end = put_run(out, len, bytes, copied, at);
        out[end..end + 2].copy_from_slice(&[b'\\', letter]);
        len = end + 2;
        copied = at + 1;
        Ok(())
    })?;
    Ok(copy_run(out, len, bytes, copied, to))
}

/// [`escape_into`] for a text whose marked bytes are all quotes and backslashes: each is
/// escaped by a backslash written before it, and copied as the first byte of the next run.
fn backslash_into(
    out: &mut [u8],
    mut len: usize,
    bytes: &[u8],
    specials: &[u64],
    from: usize,
    to: usize,
) -> Result<usize, Invalid> {
    let mut copied = from;
    each_mark(specials, from, to, |at| {
        let end = put_run(out, len, bytes, copied, at);
        out[end] = b'\\';
        len = end + 1;
        copied = at;
        Ok(())
    })?;
    Ok(copy_run(out, len, bytes, copied, to))
}

/// [`copy_run`] for the run before an escape. Those are a few bytes long: one of up to 16 is
/// copied as 16 bytes (past the run, into room that the escape and the next run overwrite)
/// rather than through a call to `memcpy`, with one bounds check on each side.
#[inline(always)]
fn put_run(out: &mut [u8], len: usize, bytes: &[u8], from: usize, at: usize) -> usize {
    let run = at - from;
    let source = bytes.get(from..).and_then(<[u8]>::first_chunk::<16>);
    let target = out
        .get_mut(len..)
        .and_then(<[u8]>::first_chunk_mut::<SLACK>);
    match (source, target) {
        (Some(source), Some(target)) if run <= 16 => {
            target[..16].copy_from_slice(source);
            len + run
        }
        _ => copy_run(out, len, bytes, from, at),
    }
}

/// Writes `bytes[from..at]` into `out` at `len` and says where it ends.
fn copy_run(out: &mut [u8], len: usize, bytes: &[u8], from: usize, at: usize) -> usize {
    let run = at - from;
    out[len..len + run].copy_from_slice(&bytes[from..at]);
    len + run
}

/// One pass over a body: checks it and notes the values to replace.
struct Pass<'a, 'r> {
    text: &'a str,
    bytes: &'a [u8],
    /// The body's quotes, backslashes and control characters (see [`json_scan::specials`]).
    specials: &'a [u64],
    pos: usize,
    redactor: &'r Redactor,
    /// The spans of the values to replace, in order and apart (a replaced value is read in
    /// [`Mode::Keep`], so nothing inside it is noted).
    replaced: Vec<(usize, usize)>,
}

/// A string token: where it is, quotes included, and whether it holds an escape. Most strings
/// are values that are only skipped; a key is looked at through [`Token::decode`].
#[derive(Debug, Clone, Copy)]
struct Token {
    start: usize,
    end: usize,
    escaped: bool,
}

impl Token {
    /// The string's value. Only escaped strings are decoded: an escaped key can still name a
    /// secret field (`"pass\u0077ord"`). Always inlined, like [`Pass::peek`].
    #[inline(always)]
    fn decode(self, text: &str) -> Result<Cow<'_, str>, Invalid> {
        if self.escaped {
            let quoted = text.get(self.start..self.end).ok_or(Invalid)?;
            serde_json::from_str(quoted)
                .map(Cow::Owned)
                .map_err(|_| Invalid)
        } else {
            // Inside the quotes, which are one byte each.
            let inner = text.get(self.start + 1..self.end - 1).ok_or(Invalid)?;
            Ok(Cow::Borrowed(inner))
        }
    }
}

impl<'a, 'r> Pass<'a, 'r> {
    fn new(text: &'a str, specials: &'a [u64], redactor: &'r Redactor) -> Self {
        Pass {
            text,
            bytes: text.as_bytes(),
            specials,
            pos: 0,
            redactor,
            replaced: Vec::new(),
        }
    }

    /// One value and nothing but whitespace after it.
    fn document(&mut self, mode: Mode) -> Result<(), Invalid> {
        self.value(mode, 0)?;
        self.skip_whitespace();
        if self.pos != self.bytes.len() {
            return Err(Invalid);
        }
        Ok(())
    }

    // The small steps below are always inlined: they run for every token of every body, and
    // a call costs about as much as the step.
    #[inline(always)]
    fn peek(&self) -> Result<u8, Invalid> {
        self.bytes.get(self.pos).copied().ok_or(Invalid)
    }

    #[inline(always)]
    fn next(&mut self) -> Result<u8, Invalid> {
        let byte = self.peek()?;
        self.pos += 1;
        Ok(byte)
    }

    #[inline(always)]
    fn skip_whitespace(&mut self) {
        self.pos = skip_whitespace(self.bytes, self.pos);
    }

    /// The value at the current position (whitespace skipped), read in `Mode::Keep` and noted
    /// to be replaced.
    fn replaced_value(&mut self, depth: u32) -> Result<(), Invalid> {
        self.skip_whitespace();
        let start = self.pos;
        self.value(Mode::Keep, depth)?;
        self.replaced.push((start, self.pos));
        Ok(())
    }

    fn value(&mut self, mode: Mode, depth: u32) -> Result<(), Invalid> {
        self.skip_whitespace();
        let start = self.pos;
        match self.peek()? {
            b'{' => return self.object(mode, depth + 1),
            b'[' => return self.array(mode, depth + 1),
            b'"' => {
                self.string()?;
            }
            b'-' | b'0'..=b'9' => self.number()?,
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => return Err(Invalid),
        }
        if mode == Mode::PublicOnly {
            self.replaced.push((start, self.pos));
        }
        Ok(())
    }

    fn object(&mut self, mode: Mode, depth: u32) -> Result<(), Invalid> {
        if depth > MAX_DEPTH {
            return Err(Invalid);
        }
        let open = self.pos;
        self.pos += 1;
        self.skip_whitespace();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(());
        }
        // The SCIM rule: a `value` member is replaced when a `path` or `name` member of its
        // object names a secret attribute, before or after it. What the members read so far
        // say is in `attribute`; a `value` read before a secret `path` is read as any other
        // value and noted in `pending`, to be replaced whole if one comes. A second such
        // `value` before then reads the object ahead for the answer (`names_secret_attribute`,
        // which the rule used for every object), kept in `ahead`: duplicates are rare.
        let mut attribute = false;
        let mut ahead = None;
        let mut pending = None;
        loop {
            self.skip_whitespace();
            let key = self.key()?;
            match mode {
                Mode::Keep => self.value(Mode::Keep, depth)?,
                Mode::PublicOnly => {
                    let key = key.decode(self.text)?;
                    if super::redact::is_token_public_field(&key) {
                        self.value(Mode::Keep, depth)?;
                    } else {
                        self.replaced_value(depth)?;
                    }
                }
                Mode::Secrets => {
                    let key = key.decode(self.text)?;
                    let secret = self.redactor.is_secret_field(&key);
                    self.skip_whitespace();
                    if (key == "path" || key == "name") && self.peek()? == b'"' {
                        let start = self.pos;
                        let path = self.string()?.decode(self.text)?;
                        attribute |= self.redactor.is_secret_field(scim_attribute(&path));
                        if secret {
                            self.replaced.push((start, self.pos));
                        }
                    } else if secret {
                        self.replaced_value(depth)?;
                    } else if key != "value" {
                        self.value(Mode::Secrets, depth)?;
                    } else if ahead.unwrap_or(attribute) {
                        self.replaced_value(depth)?;
                    } else if ahead.is_none() && pending.is_none() {
                        let (start, noted) = (self.pos, self.replaced.len());
                        self.value(Mode::Secrets, depth)?;
                        pending = Some((start, self.pos, noted..self.replaced.len()));
                    } else if ahead.is_none() {
                        let found = self.names_secret_attribute(open)?;
                        ahead = Some(found);
                        if found {
                            self.replaced_value(depth)?;
                        } else {
                            self.value(Mode::Secrets, depth)?;
                        }
                    } else {
                        self.value(Mode::Secrets, depth)?;
                    }
                }
            }
            self.skip_whitespace();
            match self.next()? {
                b',' => {}
                b'}' => {
                    if let Some((start, end, noted)) = pending {
                        if ahead.unwrap_or(attribute) {
                            // Replaced whole: what was noted inside it goes.
                            self.replaced.splice(noted, [(start, end)]);
                        }
                    }
                    return Ok(());
                }
                _ => return Err(Invalid),
            }
        }
    }

    /// A member's key and the colon after it. Always inlined, like [`Pass::peek`].
    #[inline(always)]
    fn key(&mut self) -> Result<Token, Invalid> {
        if self.peek()? != b'"' {
            return Err(Invalid);
        }
        let key = self.string()?;
        self.skip_whitespace();
        if self.next()? != b':' {
            return Err(Invalid);
        }
        Ok(key)
    }

    /// Whether the object opening at `open` has a `path` or `name` member whose string value
    /// names a secret attribute. Read for its structure only, without checking it: this pass
    /// checks the whole body anyway, and withholds it if it is not JSON. Each object is looked
    /// at this way at most once, so a body costs at most one extra read per level of nesting.
    fn names_secret_attribute(&self, open: usize) -> Result<bool, Invalid> {
        let (bytes, specials) = (self.bytes, self.specials);
        let mut pos = open + 1;
        let mut found = false;
        loop {
            pos = skip_whitespace(bytes, pos);
            if bytes.get(pos) != Some(&b'"') {
                return Ok(found);
            }
            let key = skip_string(bytes, specials, pos)?;
            pos = skip_whitespace(bytes, key.end);
            if bytes.get(pos) != Some(&b':') {
                return Ok(found);
            }
            pos = skip_whitespace(bytes, pos + 1);
            let key = key.decode(self.text)?;
            if (key == "path" || key == "name") && bytes.get(pos) == Some(&b'"') {
                let value = skip_string(bytes, specials, pos)?;
                pos = value.end;
                let value = value.decode(self.text)?;
                found |= self.redactor.is_secret_field(scim_attribute(&value));
            } else {
                pos = skip_value(bytes, specials, pos)?;
            }
            pos = skip_whitespace(bytes, pos);
            if bytes.get(pos) != Some(&b',') {
                return Ok(found);
            }
            pos += 1;
        }
    }

    fn array(&mut self, mode: Mode, depth: u32) -> Result<(), Invalid> {
        if depth > MAX_DEPTH {
            return Err(Invalid);
        }
        self.pos += 1;
        self.skip_whitespace();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value(mode, depth)?;
            self.skip_whitespace();
            match self.next()? {
                b',' => {}
                b']' => return Ok(()),
                _ => return Err(Invalid),
            }
        }
    }

    /// A string from its opening quote to past its closing one. The text is UTF-8 already, so
    /// only escapes and control characters need checking, and they are all marked. Always
    /// inlined, like [`Pass::peek`].
    #[inline(always)]
    fn string(&mut self) -> Result<Token, Invalid> {
        let start = self.pos;
        let mut escaped = false;
        let mut pos = start + 1;
        loop {
            let at = json_scan::next(self.specials, pos).ok_or(Invalid)?;
            match self.bytes.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(Token {
                        start,
                        end: self.pos,
                        escaped,
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos = at + 1;
                    self.escape()?;
                    pos = self.pos;
                }
                // A control character.
                _ => return Err(Invalid),
            }
        }
    }

    /// The rest of an escape after its backslash. A `\u` escape of a UTF-16 surrogate must be
    /// a leading one followed by a trailing one, as serde_json requires of a string.
    fn escape(&mut self) -> Result<(), Invalid> {
        match self.next()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(()),
            b'u' => match self.hex4()? {
                0xD800..=0xDBFF => {
                    if self.next()? != b'\\' || self.next()? != b'u' {
                        return Err(Invalid);
                    }
                    match self.hex4()? {
                        0xDC00..=0xDFFF => Ok(()),
                        _ => Err(Invalid),
                    }
                }
                0xDC00..=0xDFFF => Err(Invalid),
                _ => Ok(()),
            },
            _ => Err(Invalid),
        }
    }

    fn hex4(&mut self) -> Result<u16, Invalid> {
        let mut n = 0u16;
        for _ in 0..4 {
            let digit = char::from(self.next()?).to_digit(16).ok_or(Invalid)?;
            n = n << 4 | digit as u16;
        }
        Ok(n)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), Invalid> {
        if self.peek()? == b'-' {
            self.pos += 1;
        }
        match self.next()? {
            // `01` is not a number.
            b'0' if self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) => {
                return Err(Invalid)
            }
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return Err(Invalid),
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), Invalid> {
        if !self.peek()?.is_ascii_digit() {
            return Err(Invalid);
        }
        self.digits();
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Invalid> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Invalid)
        }
    }
}

/// Past the whitespace at `pos`. Always inlined, like [`Pass::peek`].
#[inline(always)]
fn skip_whitespace(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(pos) {
        pos += 1;
    }
    pos
}

/// The string opening at `start`, its escapes skipped rather than checked.
fn skip_string(bytes: &[u8], specials: &[u64], start: usize) -> Result<Token, Invalid> {
    let mut pos = start + 1;
    let mut escaped = false;
    loop {
        let at = json_scan::next(specials, pos).ok_or(Invalid)?;
        match bytes.get(at) {
            Some(b'"') => {
                return Ok(Token {
                    start,
                    end: at + 1,
                    escaped,
                })
            }
            Some(b'\\') => {
                escaped = true;
                pos = at + 2;
            }
            _ => pos = at + 1,
        }
    }
}

/// Past the value at `pos`: at the `,`, `}` or `]` after it at its own level.
fn skip_value(bytes: &[u8], specials: &[u64], mut pos: usize) -> Result<usize, Invalid> {
    let mut depth = 0usize;
    loop {
        match bytes.get(pos) {
            None => return Err(Invalid),
            Some(b'"') => pos = skip_string(bytes, specials, pos)?.end,
            Some(b',' | b'}' | b']') if depth == 0 => return Ok(pos),
            Some(b'{' | b'[') => {
                depth += 1;
                pos += 1;
            }
            Some(b'}' | b']') => {
                depth -= 1;
                pos += 1;
            }
            Some(_) => pos += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::config::TracePlan;
    use crate::trace::json_out::Unescaped;
    use crate::trace::tests::Xorshift;

    fn redactor() -> Redactor {
        Redactor::with_default_fields()
    }

    /// The redacted text, unescaped; checked to be escaped exactly as serde_json escapes it.
    fn redact_plain(text: &str, r: &Redactor, mode: Mode) -> Result<String, Invalid> {
        let escaped = String::from_utf8(redact(text, r, mode)?).expect("UTF-8");
        let plain = Unescaped(&escaped).to_string();
        assert_eq!(
            format!("\"{escaped}\""),
            serde_json::to_string(&plain).unwrap(),
            "{text:?}"
        );
        Ok(plain)
    }

    fn secrets(text: &str) -> Result<String, Invalid> {
        redact_plain(text, &redactor(), Mode::Secrets)
    }

    fn redacted(text: &str) -> String {
        secrets(text).expect("valid JSON")
    }

    /// The rules applied to a parsed tree: what bodies got before this module.
    fn tree_secrets(text: &str) -> Value {
        let mut value: Value = serde_json::from_str(text).unwrap();
        redactor().json(&mut value);
        value
    }

    fn tree_public_only(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if !super::super::redact::is_token_public_field(key) {
                        *v = Value::String(REDACTED.to_owned());
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(tree_public_only),
            _ => *value = Value::String(REDACTED.to_owned()),
        }
    }

    /// Every value in `tree` is in `ours` too, or `ours` has it redacted.
    fn covers(ours: &Value, tree: &Value) -> bool {
        if ours == &Value::String(REDACTED.to_owned()) {
            return true;
        }
        match (ours, tree) {
            (Value::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && b.iter()
                        .all(|(k, v)| a.get(k).is_some_and(|mine| covers(mine, v)))
            }
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| covers(x, y))
            }
            _ => ours == tree,
        }
    }

    #[test]
    fn a_body_without_secrets_is_kept_byte_for_byte() {
        let body =
            "{ \"b\" : [1, 2.5e3, -0, true, false, null],\n  \"a\": {\"\\u00e9\": \"\\\"x\\\"\"} }";
        assert_eq!(secrets(body), Ok(body.to_owned()));
    }

    /// The pass writes the text escaped for a JSON string, as `json_out` would escape it: the
    /// quotes, the backslashes of escapes (a surrogate pair's second one too) and the line
    /// breaks, tabs and carriage returns between tokens, around replaced values as well.
    #[test]
    fn the_text_comes_out_escaped_exactly_as_the_serializer_escapes_it() {
        let r = redactor();
        let bodies = [
            "{\n\t\"a\" :\r\n [\"x\\\"y\", \"\\\\\", \"\\ud83d\\ude00\\n\"]\t,\n \"password\":\n\t\"p\\\"w\"\n}\r\n",
            "\t\"s\"\n",
            " [ {\"token\" : [ \"a\" ,\n\"b\" ] } , 1 ]",
            "{\"access_token\":\"t\",\n\"scope\":\"a\\tb\",\"n\":[1,\n{\"error\":\"\\u0041\"}]}",
        ];
        for body in bodies {
            for mode in [Mode::Secrets, Mode::PublicOnly, Mode::Keep] {
                let plain = redact_plain(body, &r, mode).expect("valid JSON");
                if mode == Mode::Keep {
                    assert_eq!(plain, body);
                }
                assert!(!plain.contains("p\\\"w") || mode == Mode::Keep, "{plain}");
            }
        }
        let out = redact(" {\"password\" : \"x\"}\n", &r, Mode::Secrets).unwrap();
        assert_eq!(out, r#" {\"password\" : \"[REDACTED]\"}\n"#.as_bytes());
    }

    #[test]
    fn secret_values_are_replaced_whole_at_any_depth_keeping_the_rest_as_sent() {
        let body = r#"{"z":1, "password" : {"a":[1,{"b":2}]}, "list":[[{"token":"t1"}],[{"x":[{"SECRET":"s"}]}]],"emails":[{"type":"work","value":"e@x"}]}"#;
        assert_eq!(
            redacted(body),
            r#"{"z":1, "password" : "[REDACTED]", "list":[[{"token":"[REDACTED]"}],[{"x":[{"SECRET":"[REDACTED]"}]}]],"emails":[{"type":"work","value":"e@x"}]}"#
        );
    }

    #[test]
    fn an_escaped_key_is_matched_by_what_it_decodes_to() {
        let out =
            redacted(r#"{"pass\u0077ord":"p1","\u0070ath":"x","a":{"client\u005fsecret":"c1"}}"#);
        assert!(!out.contains("p1") && !out.contains("c1"), "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["password"], REDACTED);
        assert_eq!(v["a"]["client_secret"], REDACTED);
    }

    #[test]
    fn every_duplicate_of_a_secret_key_is_replaced() {
        let out = redacted(r#"{"password":"first","password":"second","apiKey":1,"APIKEY":[2]}"#);
        assert_eq!(
            out,
            r#"{"password":"[REDACTED]","password":"[REDACTED]","apiKey":"[REDACTED]","APIKEY":"[REDACTED]"}"#
        );
    }

    #[test]
    fn a_scim_patch_value_is_replaced_whether_its_path_comes_before_or_after_it() {
        let out = redacted(concat!(
            r#"[{"op":"replace","path":"password","value":"v1"},"#,
            r#"{"value":"v2","op":"replace","path":"urn:ietf:params:scim:schemas:core:2.0:User:password"},"#,
            r#"{"value":"v3","value":"v4","name":"pass\u0077ord"},"#,
            r#"{"v\u0061lue":"v5","path":"secret[type eq \"x\"]"},"#,
            r#"{"op":"replace","path":"active","value":false},"#,
            r#"{"path":{"nested":"password"},"value":"kept"}]"#
        ));
        for secret in ["v1", "v2", "v3", "v4", "v5"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains(r#""value":false"#) && out.contains(r#""value":"kept""#));
    }

    #[test]
    fn token_bodies_keep_only_public_fields_and_no_scalars() {
        let mode = Mode::PublicOnly;
        let r = redactor();
        let out = redact_plain(
            r#"{"access_token":"at","scope":"a b","error":{"x":"kept"},"n":[1]}"#,
            &r,
            mode,
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"access_token":"[REDACTED]","scope":"a b","error":{"x":"kept"},"n":"[REDACTED]"}"#
        );
        assert_eq!(
            redact_plain(r#""raw-token""#, &r, mode).unwrap(),
            r#""[REDACTED]""#
        );
        assert_eq!(
            redact_plain(r#"[1,{"token_type":"Bearer"},[true]]"#, &r, mode).unwrap(),
            r#"["[REDACTED]",{"token_type":"Bearer"},["[REDACTED]"]]"#
        );
    }

    #[test]
    fn bodies_serde_json_refuses_are_refused() {
        let deep_ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let deep_bad = format!("{}{}", "[".repeat(128), "]".repeat(128));
        let deep_obj = format!("{}1{}", r#"{"a":"#.repeat(128), "}".repeat(128));
        let cases: Vec<&str> = vec![
            "",
            " ",
            "{",
            "}",
            "[",
            "[1,]",
            "{\"a\":1,}",
            "{,}",
            "[,1]",
            "{\"a\" 1}",
            "{a:1}",
            "{'a':1}",
            "01",
            "-",
            "-01",
            "1.",
            ".5",
            "+1",
            "1e",
            "1e+",
            "0x10",
            "NaN",
            "Infinity",
            "tru",
            "nul",
            "truex",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
            "\"abc",
            "\"a\u{1}b\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12G4\"",
            "\"\\ud800\"",
            "\"\\ud800\\u0041\"",
            "\"\\udc00\"",
            "\"\\ud800\\ud800\"",
            "\"\\ud83d\\ude00\"",
            "{} {}",
            "[] x",
            "1 2",
            "\u{feff}{}",
            "/* c */ {}",
            "{\"a\":1}//",
            "\"\t\"",
            "[\"\\\"]",
            "{\"a\":1}\n",
            "\t[ ]\r\n",
            "-0.0e-0",
            "1E+2",
            "0",
            "[\"\\/\\b\\f\\n\\r\\t\\\\\\\"\"]",
            &deep_ok,
            &deep_bad,
            &deep_obj,
        ];
        for case in cases {
            let theirs = serde_json::from_str::<Value>(case).is_ok();
            assert_eq!(secrets(case).is_ok(), theirs, "{case:?}");
            assert_eq!(is_json(case.as_bytes(), &redactor()), theirs, "{case:?}");
        }
    }

    #[test]
    fn redaction_matches_the_tree_rules_on_valid_bodies() {
        let bodies = [
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"emails","value":[{"value":"a@b"}]},{"op":"replace","path":"password","value":{"deep":["x"]}}]}"#,
            r#"{"userName":"bob","name":{"givenName":"B"},"password":"p","meta":{"version":"W/\"1\""}}"#,
            "[\n  {\"token\": null},\n  {\"a\": [ {\"refresh_token\": [1, 2]} ]}\n]",
            r#"{"name":"client_secret","value":"x","other":{"name":"ok","value":"y"}}"#,
            r#""just a string""#,
            "12345678901234567890123",
            r#"{"caf\u00e9":"\ud83d\ude00","secret":"\u0000"}"#,
        ];
        for body in bodies {
            let ours: Value = serde_json::from_str(&redacted(body)).unwrap();
            assert_eq!(ours, tree_secrets(body), "{body}");
            let mut tree: Value = serde_json::from_str(body).unwrap();
            tree_public_only(&mut tree);
            let ours = redact_plain(body, &redactor(), Mode::PublicOnly).unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(&ours).unwrap(),
                tree,
                "{body}"
            );
        }
    }

    /// A compact body (no control character, so each quote and backslash is escaped without
    /// being looked up) is escaped as serde_json escapes its text, whatever the length of the
    /// runs between escapes, across the 64-byte words, and with replaced values among them;
    /// the same body with a newline in it takes the other way, to the same text.
    #[test]
    fn compact_bodies_are_escaped_by_a_backslash_before_each_quote_and_backslash() {
        for run in 0..70 {
            let plain = "x".repeat(run);
            let body = format!(
                r#"{{"k{plain}":"{plain}\"{plain}\\","password":"{plain}","v":["{plain}\"",1],"e":""}}"#
            );
            for body in [body.clone(), body.replacen(',', ",\n", 1)] {
                let kept = redact(&body, &redactor(), Mode::Keep).unwrap();
                let quoted = serde_json::to_string(&body).unwrap();
                assert_eq!(kept, &quoted.as_bytes()[1..quoted.len() - 1], "{body}");
                let ours: Value = serde_json::from_str(&redacted(&body)).unwrap();
                assert_eq!(ours, tree_secrets(&body), "{body}");
                assert_eq!(ours["password"], REDACTED, "{body}");
            }
        }
    }

    /// A generated SCIM-like value: objects whose `value`, `path` and `name` members come in any
    /// order (`value` any number of times), with secret and plain attributes, nested.
    fn scim_like(rng: &mut crate::trace::tests::Xorshift, depth: u32, out: &mut String) {
        const KEYS: &[&str] = &["value", "path", "name", "op", "password", "v\\u0061lue"];
        const LEAVES: &[&str] = &[
            r#""password""#,
            r#""emails""#,
            r#""urn:x:User:token""#,
            r#""emails[type eq \"work\"]""#,
            "1",
            "null",
            r#"{"path":"password"}"#,
        ];
        match rng.below(if depth == 0 { 1 } else { 4 }) {
            0 => out.push_str(LEAVES[rng.below(LEAVES.len())]),
            1 => {
                out.push('[');
                for i in 0..rng.below(3) {
                    if i > 0 {
                        out.push(',');
                    }
                    scim_like(rng, depth - 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                // A `path` or `name` at most once: a tree keeps only the last of duplicates.
                let mut used = Vec::new();
                for i in 0..rng.below(5) {
                    let key = KEYS[rng.below(KEYS.len())];
                    if key.len() == 4 && used.contains(&key) {
                        continue;
                    }
                    used.push(key);
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("\"{key}\":"));
                    scim_like(rng, depth - 1, out);
                }
                out.push('}');
            }
        }
    }

    /// The `value` decided when its object ends, or by reading ahead for a second one, gives
    /// what the tree rules give, whatever the order of the members.
    #[test]
    fn generated_scim_objects_are_redacted_as_the_tree_rules_redact_them() {
        let mut rng = crate::trace::tests::Xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..5_000 {
            let mut body = String::new();
            scim_like(&mut rng, 4, &mut body);
            let ours: Value = serde_json::from_str(&redacted(&body)).unwrap();
            assert_eq!(ours, tree_secrets(&body), "{body}");
        }
    }

    /// A `value` with secrets of its own inside, before or after its object's `path` or
    /// `name`, is replaced whole when the path is secret and keeps only its own replacements
    /// when not, next to other objects' values at other depths: as the tree rules do.
    #[test]
    fn a_value_with_secrets_inside_is_replaced_whole_when_its_path_is_secret() {
        let bodies = [
            r#"[{"value":{"password":"p","k":"v"},"op":"add","path":"password"},{"value":{"password":"p","k":"v"},"path":"emails"}]"#,
            r#"{"value":[{"value":"a","name":"secret"},{"value":{"token":"t"}}],"x":{"value":"b","path":"x:token"},"value":"c","name":"token"}"#,
            r#"{"value":"a","value":{"path":"password","value":"b"},"path":"active","value":[1,{"secret":2}]}"#,
        ];
        for body in bodies {
            let ours: Value = serde_json::from_str(&redacted(body)).unwrap();
            assert_eq!(ours, tree_secrets(body), "{body}");
        }
        let out = redacted(bodies[1]);
        assert_eq!(
            out,
            r#"{"value":"[REDACTED]","x":{"value":"[REDACTED]","path":"x:token"},"value":"[REDACTED]","name":"token"}"#
        );
    }

    /// Mutated bodies: accepted exactly when serde_json accepts them (short of numbers too big
    /// for an f64, which are valid JSON), and then never showing a value the tree rules hide.
    #[test]
    fn mutated_bodies_are_refused_like_serde_json_and_never_show_more_than_the_tree_rules() {
        let seeds = [
            r#"{"Operations":[{"op":"replace","path":"password","value":"PV"}],"user":{"password":"P","n":[1,-2.5e3,true,null]}}"#,
            r#"[{"value":"v","name":"secret"},{"token":{"a":"\u0041\n"}},"x\"y"]"#,
            r#"{"access_token":"AT","expires_in":3600,"scope":"a b","nested":[{"error":"e"}]}"#,
        ];
        let alphabet = br#"{}[]:,"\ u0aeE.-+19tfnl"#;
        let mut rng = Xorshift(0x2545_f491_4f6c_dd1du64);
        let mut random = move |below: usize| rng.below(below);
        let plan = TracePlan {
            har: None,
            jsonl: None,
            bodies: true,
            max_body: 0,
            redact_fields: vec!["password".into(), "token".into(), "secret".into()],
            rotate_bytes: 0,
            keep: 10,
            channel_capacity: 1,
            queue_bytes: 1 << 20,
            recent: 0,
            auth_headers: Vec::new(),
            raw_body_routes: Vec::new(),
        };
        let r = Redactor::new(&plan);
        for round in 0..6000 {
            let mut body = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..1 + random(3) {
                let at = random(body.len() + 1);
                match random(3) {
                    0 if at < body.len() => {
                        body.remove(at);
                    }
                    1 => body.insert(at, alphabet[random(alphabet.len())]),
                    _ => {
                        let end = (at + random(8)).min(body.len());
                        let piece = body[at..end].to_vec();
                        body.splice(at..at, piece);
                    }
                }
            }
            let Ok(text) = std::str::from_utf8(&body) else {
                continue;
            };
            let theirs = serde_json::from_str::<Value>(text);
            for mode in [Mode::Secrets, Mode::PublicOnly] {
                let ours = redact_plain(text, &r, mode);
                match (&ours, &theirs) {
                    (Ok(ours), Ok(tree)) => {
                        let mut tree = tree.clone();
                        match mode {
                            Mode::Secrets => r.json(&mut tree),
                            _ => tree_public_only(&mut tree),
                        }
                        let ours: Value = serde_json::from_str(ours).unwrap();
                        assert!(covers(&ours, &tree), "{text}\nours {ours}\ntree {tree}");
                    }
                    (Err(_), Err(_)) => {}
                    (Ok(_), Err(e)) => {
                        assert!(e.to_string().contains("out of range"), "{text}: {e}")
                    }
                    (Err(_), Ok(_)) => panic!("refused valid JSON {text}"),
                }
            }
        }
    }

    /// Random bodies with strings and runs of whitespace that cross the scanner's 16- and
    /// 64-byte blocks, escapes and multi-byte characters everywhere, bodies past the stack's
    /// 2 KiB, each also mutated with the bytes that end a string: accepted exactly when
    /// serde_json accepts them, and then written escaped exactly as serde_json escapes the text
    /// (with nothing replaced) or never showing a value the tree rules hide.
    #[test]
    fn scanned_bodies_are_accepted_and_escaped_exactly_as_serde_json_reads_and_writes_them() {
        let mut rng = Xorshift(0x5851_f42d_4c95_7f2du64);
        let mut random = move |below: usize| rng.below(below);
        let pieces = [
            "a",
            "Z",
            " ",
            "é",
            "€",
            "😀",
            "\\\"",
            "\\\\",
            "\\n",
            "\\t",
            "\\/",
            "\\u0041",
            "\\ud83d\\ude00",
            "\\u00e9",
            "x\\\"y",
            "0123456789abcdef",
        ];
        let keys = [
            "id",
            "password",
            "value",
            "path",
            "name",
            "meta",
            "pass\\u0077ord",
            "k",
        ];
        let spaces = ["", " ", "\n", "\t", "\r\n", "  \n\t "];
        let r = redactor();
        for round in 0..3000 {
            let mut text = String::new();
            let mut stack: Vec<bool> = Vec::new();
            let mut need_value = true;
            let target = [40, 200, 3000][round % 3];
            while text.len() < target || need_value || !stack.is_empty() {
                text.push_str(spaces[random(spaces.len())]);
                let in_object = stack.last() == Some(&true);
                if need_value {
                    let top = stack.is_empty() && round % 3 != 0;
                    if top || text.len() < target && stack.len() < 6 && random(4) == 0 {
                        let object = random(2) == 0;
                        text.push(if object { '{' } else { '[' });
                        stack.push(object);
                        if object {
                            text.push_str(&format!("\"{}\":", keys[random(keys.len())]));
                        }
                        continue;
                    }
                    match random(4) {
                        0 => text.push_str(["1", "-2.5e3", "0", "true", "null"][random(5)]),
                        _ => {
                            text.push('"');
                            for _ in 0..random(40) {
                                text.push_str(pieces[random(pieces.len())]);
                            }
                            text.push('"');
                        }
                    }
                    need_value = false;
                } else if text.len() < target
                    && (random(3) != 0 || stack.len() == 1)
                    && !stack.is_empty()
                {
                    text.push(',');
                    if in_object {
                        text.push_str(&format!("\"{}\":", keys[random(keys.len())]));
                    }
                    need_value = true;
                } else if let Some(object) = stack.pop() {
                    text.push(if object { '}' } else { ']' });
                } else {
                    break;
                }
            }
            let mut bodies = vec![text.clone().into_bytes()];
            let mut mutated = text.into_bytes();
            for _ in 0..1 + random(3) {
                let byte =
                    [b'"', b'\\', b'\n', 0x01, 0x1f, b'u', b'{', b']', b',', 0xc3][random(10)];
                match random(2) {
                    0 => mutated.insert(random(mutated.len() + 1), byte),
                    _ if !mutated.is_empty() => {
                        mutated.remove(random(mutated.len()));
                    }
                    _ => {}
                }
            }
            bodies.push(mutated);
            for body in bodies {
                let Ok(text) = std::str::from_utf8(&body) else {
                    continue;
                };
                let theirs = serde_json::from_str::<Value>(text);
                assert_eq!(is_json(&body, &r), theirs.is_ok(), "{text:?}");
                let kept = redact(text, &r, Mode::Keep);
                match (&kept, &theirs) {
                    (Ok(kept), Ok(_)) => {
                        let quoted = serde_json::to_string(text).unwrap();
                        assert_eq!(kept, &quoted.as_bytes()[1..quoted.len() - 1], "{text:?}");
                    }
                    (Err(_), Err(_)) => {}
                    _ => panic!("{text:?}: ours {kept:?}, serde_json {theirs:?}"),
                }
                if let Ok(tree) = theirs {
                    let ours: Value = serde_json::from_str(&secrets(text).unwrap()).unwrap();
                    let mut tree = tree;
                    r.json(&mut tree);
                    assert!(covers(&ours, &tree), "{text:?}\nours {ours}\ntree {tree}");
                } else {
                    assert_eq!(secrets(text), Err(Invalid), "{text:?}");
                }
            }
        }
    }
}
