//! The `WWW-Authenticate` grammar (RFC 9110 §11.6.1 challenge lists), and what makes a configured
//! list of challenges usable. Shared vocabulary at the crate root, depending on nothing above it:
//! the challenge rewriter uses it, and config validation checks `[routes.challenge]` with it.
//!
//! ```text
//! WWW-Authenticate = #challenge
//! challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param = token BWS "=" BWS ( token / quoted-string )
//! token68    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//!
//! The grammar is ambiguous at a comma: what follows may be another auth-param of the same
//! challenge or the scheme of the next one. A token followed by `=` is an auth-param; anything
//! else starts a new challenge. Empty list elements (`, ,`) are skipped, as recipients must.

use std::fmt;

use http::header::WWW_AUTHENTICATE;
use http::HeaderMap;

/// One challenge: a scheme and either a token68 or a list of auth-params.
///
/// A parsed challenge keeps its exact source text, so `Display` re-emits it byte for byte;
/// a constructed one is emitted canonically.
#[derive(Debug, Clone)]
pub struct Challenge {
    scheme: String,
    data: ChallengeData,
    source: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeData {
    Token68(String),
    /// In the order received; empty for a bare scheme such as `Negotiate`.
    Params(Vec<AuthParam>),
}

/// A name and its value with quoting and escapes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParam {
    pub name: String,
    pub value: String,
}

/// Why [`Challenge::new`] refused its parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChallenge {
    #[error("auth-scheme {0:?} is not a token")]
    Scheme(String),
    #[error("token68 {0:?} is not valid token68")]
    Token68(String),
    #[error("auth-param name {0:?} is not a token")]
    ParamName(String),
    #[error("value of auth-param {0:?} contains a control character")]
    ParamValue(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    ExpectedScheme,
    ExpectedParamName,
    ExpectedEquals,
    ExpectedParamValue,
    ExpectedComma,
    UnterminatedQuote,
    ControlCharacter,
    ParamAfterToken68,
    InvalidUtf8,
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseErrorKind::ExpectedScheme => "expected an auth-scheme",
            ParseErrorKind::ExpectedParamName => "expected an auth-param name",
            ParseErrorKind::ExpectedEquals => "expected `=` after the auth-param name",
            ParseErrorKind::ExpectedParamValue => "expected a token or quoted-string value",
            ParseErrorKind::ExpectedComma => "expected `,` between list elements",
            ParseErrorKind::UnterminatedQuote => "unterminated quoted-string",
            ParseErrorKind::ControlCharacter => "control character",
            ParseErrorKind::ParamAfterToken68 => "auth-param after a token68",
            ParseErrorKind::InvalidUtf8 => "bytes that are not UTF-8",
        })
    }
}

/// What went wrong and where: the byte offset inside the header value and, when several
/// header lines were parsed, which line (0-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    kind: ParseErrorKind,
    offset: usize,
    line: Option<usize>,
    found: Option<char>,
}

impl ParseError {
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }

    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn line(&self) -> Option<usize> {
        self.line
    }

    pub(crate) fn on_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "WWW-Authenticate line {}: ", line + 1)?;
        }
        write!(f, "{} at byte {}", self.kind, self.offset)?;
        match (self.kind, self.found) {
            (ParseErrorKind::InvalidUtf8, _) => Ok(()),
            (_, Some(c)) => write!(f, " (found {c:?})"),
            (_, None) => f.write_str(" (found end of value)"),
        }
    }
}

/// Parses one header value. An empty value is an empty list, which RFC 9110 allows.
pub fn parse(header_value: &str) -> Result<Vec<Challenge>, ParseError> {
    let mut challenges = Vec::new();
    let mut parser = Parser {
        text: header_value,
        bytes: header_value.as_bytes(),
        pos: 0,
    };
    loop {
        parser.skip_separators();
        if parser.at_end() {
            return Ok(challenges);
        }
        challenges.push(parser.challenge()?);
    }
}

/// Parses every `WWW-Authenticate` line of `headers`, in order, into one list.
pub fn parse_headers(headers: &HeaderMap) -> Result<Vec<Challenge>, ParseError> {
    let mut challenges = Vec::new();
    for (line, value) in headers.get_all(WWW_AUTHENTICATE).iter().enumerate() {
        let text = header_text(value.as_bytes()).map_err(|e| e.on_line(line))?;
        challenges.extend(parse(text).map_err(|e| e.on_line(line))?);
    }
    Ok(challenges)
}

/// A header value as text: obs-text is allowed in quoted-strings, so this takes UTF-8 rather
/// than the visible-ASCII-only `HeaderValue::to_str`.
pub(crate) fn header_text(bytes: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| ParseError {
        kind: ParseErrorKind::InvalidUtf8,
        offset: e.valid_up_to(),
        line: None,
        found: None,
    })
}

impl Challenge {
    /// A challenge built in code; it has no source text and is emitted canonically.
    pub fn new(scheme: &str, data: ChallengeData) -> Result<Challenge, InvalidChallenge> {
        if !is_token(scheme) {
            return Err(InvalidChallenge::Scheme(scheme.to_owned()));
        }
        match &data {
            ChallengeData::Token68(t) if !is_token68(t) => {
                return Err(InvalidChallenge::Token68(t.clone()));
            }
            ChallengeData::Token68(_) => {}
            ChallengeData::Params(params) => {
                for p in params {
                    if !is_token(&p.name) {
                        return Err(InvalidChallenge::ParamName(p.name.clone()));
                    }
                    if p.value.bytes().any(is_control) {
                        return Err(InvalidChallenge::ParamValue(p.name.clone()));
                    }
                }
            }
        }
        Ok(Challenge {
            scheme: scheme.to_owned(),
            data,
            source: None,
        })
    }

    /// The scheme as received (compare with [`Challenge::is_scheme`]).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Scheme names are case-insensitive: `BASIC` is Basic.
    pub fn is_scheme(&self, name: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(name)
    }

    pub fn data(&self) -> &ChallengeData {
        &self.data
    }

    /// The value of the first auth-param called `name`, compared case-insensitively.
    pub fn param(&self, name: &str) -> Option<&str> {
        match &self.data {
            ChallengeData::Params(params) => params
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(name))
                .map(|p| p.value.as_str()),
            ChallengeData::Token68(_) => None,
        }
    }

    /// The exact text this challenge was parsed from, if it was parsed.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// Drops the source text so that `Display` emits the canonical form.
    pub fn into_canonical(mut self) -> Challenge {
        self.source = None;
        self
    }

    fn write_canonical(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        match &self.data {
            ChallengeData::Token68(t) => write!(f, " {t}"),
            ChallengeData::Params(params) => {
                for (i, p) in params.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    f.write_str(&p.name)?;
                    f.write_str("=")?;
                    // RFC 9110 §11.5: senders must quote realm, for historical clients.
                    if is_token(&p.value) && !p.name.eq_ignore_ascii_case("realm") {
                        f.write_str(&p.value)?;
                    } else {
                        write_quoted(f, &p.value)?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => f.write_str(source),
            None => self.write_canonical(f),
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    f.write_str("\"")?;
    let mut rest = value;
    while let Some(i) = rest.find(['"', '\\']) {
        f.write_str(&rest[..i])?;
        f.write_str("\\")?;
        f.write_str(&rest[i..i + 1])?;
        rest = &rest[i + 1..];
    }
    f.write_str(rest)?;
    f.write_str("\"")
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(is_token68_char)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn error(&self, kind: ParseErrorKind) -> ParseError {
        self.error_at(kind, self.pos)
    }

    fn error_at(&self, kind: ParseErrorKind, offset: usize) -> ParseError {
        let found = self.text.get(offset..).and_then(|s| s.chars().next());
        // A control character is the more useful diagnosis than what was expected there.
        let kind = match found {
            Some(c) if c.is_ascii() && is_control(c as u8) => ParseErrorKind::ControlCharacter,
            _ => kind,
        };
        ParseError {
            kind,
            offset,
            line: None,
            found,
        }
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.pos += 1;
        }
    }

    fn skip_separators(&mut self) {
        while self.peek().is_some_and(|b| is_ows(b) || b == b',') {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.text[start..self.pos])
    }

    /// At the end of the value or at a comma, after optional whitespace.
    fn at_element_end(&self) -> bool {
        let mut i = self.pos;
        while self.bytes.get(i).copied().is_some_and(is_ows) {
            i += 1;
        }
        matches!(self.bytes.get(i), None | Some(b','))
    }

    fn challenge(&mut self) -> Result<Challenge, ParseError> {
        let start = self.pos;
        let scheme = self
            .token()
            .ok_or_else(|| self.error(ParseErrorKind::ExpectedScheme))?
            .to_owned();
        let mut end = self.pos;
        let mut token68 = None;
        let mut params = Vec::new();

        let before_space = self.pos;
        self.skip_ows();
        if !self.at_element_end() {
            if self.pos == before_space {
                return Err(self.error(ParseErrorKind::ExpectedComma));
            }
            match self.token68() {
                Some(t) => token68 = Some(t),
                None => params.push(self.param()?),
            }
            end = self.pos;
        }

        loop {
            self.skip_ows();
            match self.peek() {
                None => break,
                Some(b',') => {}
                Some(_) => return Err(self.error(ParseErrorKind::ExpectedComma)),
            }
            self.skip_separators();
            if self.at_end() || !self.next_is_param() {
                break;
            }
            if token68.is_some() {
                return Err(self.error(ParseErrorKind::ParamAfterToken68));
            }
            params.push(self.param()?);
            end = self.pos;
        }

        let data = match token68 {
            Some(t) => ChallengeData::Token68(t),
            None => ChallengeData::Params(params),
        };
        Ok(Challenge {
            scheme,
            data,
            source: Some(self.text[start..end].into()),
        })
    }

    /// A token68 that makes up the whole rest of the element; otherwise leaves the position.
    fn token68(&mut self) -> Option<String> {
        let start = self.pos;
        let mut i = start;
        while self.bytes.get(i).copied().is_some_and(is_token68_char) {
            i += 1;
        }
        if i == start {
            return None;
        }
        while self.bytes.get(i) == Some(&b'=') {
            i += 1;
        }
        let saved = self.pos;
        self.pos = i;
        if self.at_element_end() {
            Some(self.text[start..i].to_owned())
        } else {
            self.pos = saved;
            None
        }
    }

    fn next_is_param(&self) -> bool {
        let mut i = self.pos;
        while self.bytes.get(i).copied().is_some_and(is_tchar) {
            i += 1;
        }
        if i == self.pos {
            return false;
        }
        while self.bytes.get(i).copied().is_some_and(is_ows) {
            i += 1;
        }
        self.bytes.get(i) == Some(&b'=')
    }

    fn param(&mut self) -> Result<AuthParam, ParseError> {
        let name = self
            .token()
            .ok_or_else(|| self.error(ParseErrorKind::ExpectedParamName))?
            .to_owned();
        self.skip_ows();
        if self.peek() != Some(b'=') {
            return Err(self.error(ParseErrorKind::ExpectedEquals));
        }
        self.pos += 1;
        self.skip_ows();
        let value = if self.peek() == Some(b'"') {
            self.quoted_string()?
        } else {
            self.token()
                .ok_or_else(|| self.error(ParseErrorKind::ExpectedParamValue))?
                .to_owned()
        };
        Ok(AuthParam { name, value })
    }

    fn quoted_string(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut value = String::new();
        let mut run_start = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.error_at(ParseErrorKind::UnterminatedQuote, open)),
                Some(b'"') => {
                    value.push_str(&self.text[run_start..self.pos]);
                    self.pos += 1;
                    return Ok(value);
                }
                Some(b'\\') => {
                    value.push_str(&self.text[run_start..self.pos]);
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(self.error_at(ParseErrorKind::UnterminatedQuote, open)),
                        Some(b) if is_control(b) => {
                            return Err(self.error(ParseErrorKind::ControlCharacter))
                        }
                        // The escaped character starts the next run, so a multi-byte
                        // character is copied whole.
                        Some(_) => run_start = self.pos,
                    }
                    self.pos += 1;
                }
                Some(b) if is_control(b) => {
                    return Err(self.error(ParseErrorKind::ControlCharacter))
                }
                Some(_) => self.pos += 1,
            }
        }
    }
}

/// Why a configured challenge list (`challenge.add`, `challenge.remove`) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeConfigError {
    #[error("challenge.add entry {entry:?}: {error}")]
    Unparsable { entry: String, error: ParseError },
    #[error("challenge.add entry {entry:?} holds no challenge")]
    Empty { entry: String },
    #[error("challenge.add entry {entry:?} holds {count} challenges; write one per entry")]
    Several { entry: String, count: usize },
    #[error("challenge.add entry {entry:?} repeats the scheme {scheme:?} of an earlier entry")]
    DuplicateScheme { entry: String, scheme: String },
    #[error("challenge.add entry {entry:?} cannot be sent as a header value")]
    NotAHeaderValue { entry: String },
    #[error("challenge.remove entry {entry:?} is not an auth-scheme name")]
    BadRemove { entry: String },
    #[error("challenge.mode = \"replace\" needs at least one challenge in challenge.add")]
    ReplaceWithoutAdd,
}

/// Parses a configured `add` list (one challenge per entry, no scheme twice, each sendable as a
/// header value) and checks that every `remove` entry is a scheme name; `replace` says the list
/// replaces the target's challenge and so must not be empty. Config validation calls it to
/// report a bad entry with its place in the file; the rewriter calls it to get the challenges.
pub fn configured(
    add: &[String],
    remove: &[String],
    replace: bool,
) -> Result<Vec<Challenge>, ChallengeConfigError> {
    let mut checked: Vec<Challenge> = Vec::with_capacity(add.len());
    for entry in add {
        let mut parsed = parse(entry).map_err(|error| ChallengeConfigError::Unparsable {
            entry: entry.clone(),
            error,
        })?;
        let challenge = match parsed.len() {
            0 => {
                return Err(ChallengeConfigError::Empty {
                    entry: entry.clone(),
                })
            }
            1 => parsed.remove(0),
            count => {
                return Err(ChallengeConfigError::Several {
                    entry: entry.clone(),
                    count,
                })
            }
        };
        if checked.iter().any(|a| a.is_scheme(challenge.scheme())) {
            return Err(ChallengeConfigError::DuplicateScheme {
                entry: entry.clone(),
                scheme: challenge.scheme().to_owned(),
            });
        }
        if http::HeaderValue::from_str(&challenge.to_string()).is_err() {
            return Err(ChallengeConfigError::NotAHeaderValue {
                entry: entry.clone(),
            });
        }
        checked.push(challenge);
    }
    if let Some(entry) = remove.iter().find(|r| !is_token(r)) {
        return Err(ChallengeConfigError::BadRemove {
            entry: entry.clone(),
        });
    }
    if replace && checked.is_empty() {
        return Err(ChallengeConfigError::ReplaceWithoutAdd);
    }
    Ok(checked)
}
