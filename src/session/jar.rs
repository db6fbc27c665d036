//! One session's cookies: cookie_store 0.22 with the RFC 6265 gaps closed that matter to a
//! proxy (see DESIGN, "Lessons from the field"): public-suffix domains, `__Secure-`/`__Host-`
//! prefixes, control characters, `Secure` over plain http to loopback, §5.4 header order, and
//! the `Domain` attribute read exactly as §5.2.3 says.

use std::cell::OnceCell;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use cookie_store::{Cookie, CookieExpiration, RawCookie};
use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::{Host, Url};

use super::psl::SuffixList;

/// RFC 6265bis §5.6: a name plus value longer than this is ignored.
const MAX_NAME_VALUE_BYTES: usize = 4096;

/// Why a `Set-Cookie` line was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("contains a control character")]
    ControlCharacter,
    #[error("malformed")]
    Malformed,
    #[error("name and value longer than 4096 bytes")]
    TooLarge,
    #[error("Secure cookie set over plain http")]
    SecureOverHttp,
    #[error("__Secure- prefix without Secure over https")]
    SecurePrefix,
    #[error("__Host- prefix without Secure over https, Path=/ and no Domain")]
    HostPrefix,
    #[error("Domain is a public suffix")]
    PublicSuffix,
    #[error("Domain does not match the upstream host")]
    DomainMismatch,
    #[error("expired and no cookie of that name to delete")]
    ExpiredUnknown,
}

/// What one accepted `Set-Cookie` line did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absorbed {
    Stored,
    Deleted,
}

/// A cookie with the creation order RFC 6265 §5.4 sorts by, which cookie_store does not keep.
/// No `Debug`: it holds a cookie value.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredCookie {
    pub(crate) created: u64,
    pub(crate) cookie: Cookie<'static>,
}

/// One stored cookie and its creation order (RFC 6265 §5.4 sorts by it; cookie_store's
/// `Cookie` does not keep it).
struct Entry {
    cookie: Cookie<'static>,
    created: u64,
}

/// The cookies of one session. Not thread-safe by itself: the store keeps each jar behind its
/// own mutex. Its `Debug` shows cookie names, never values. Every call that depends on expiry
/// takes the wall time `now` from the caller's clock rather than holding one: a clock per
/// jar would cost each of 100,000 idle sessions a pointer.
///
/// cookie_store parses and validates each cookie (domain, path, expiry); the jar keeps them in a
/// plain vector rather than a `CookieStore`, whose three nested hash maps cost about 1.7 KiB for
/// a session's single cookie: with 100,000 idle sessions that was most of the proxy's memory.
#[derive(Default)]
pub struct Jar {
    /// A handful of cookies at most: a vector beats a map here.
    entries: Vec<Entry>,
    next_seq: u64,
    /// Bumped by every change to the stored cookies, so a kept header is never stale.
    version: u64,
    /// Boxed: most of a large number of sessions sit idle, and they pay one pointer for it.
    last_header: Option<Box<LastHeader>>,
}

/// The header built by the last [`Jar::cookie_header`] call, and what it was built from: the
/// jar version and the creation sequence numbers of the matching cookies in store order.
struct LastHeader {
    version: u64,
    seqs: Vec<u64>,
    header: Option<(HeaderValue, Arc<[String]>)>,
}

impl Jar {
    pub fn new() -> Jar {
        Jar::default()
    }

    /// The `Cookie` header for a request to `path` on `origin` (whose own path is ignored) and
    /// the names it carries, or `None` when no stored cookie applies. Longer paths first, then
    /// older cookies first (RFC 6265 §5.4).
    ///
    /// Matching uses the stored domain and path directly instead of cookie_store's
    /// `matches(&Url)`, which re-parses every stored domain (IDNA) and wants a `Url` per request
    /// path. The header of the last call is kept: a session sends the same cookies on almost
    /// every request, so the common case builds nothing.
    pub fn cookie_header(
        &mut self,
        origin: &Url,
        path: &str,
        now: SystemTime,
    ) -> Option<(HeaderValue, Arc<[String]>)> {
        let https = origin.scheme() == "https";
        let now = Now::new(now);
        let applies = |entry: &&Entry| {
            let cookie = &entry.cookie;
            !now.expires(cookie)
                && cookie.domain.matches(origin)
                && path_matches(&cookie.path, path)
                // cookie_store counts http://localhost as a secure origin; the upstream is not.
                && (https || cookie.secure() != Some(true))
        };
        if let Some(last) = &self.last_header {
            let mut expected = last.seqs.iter();
            let unchanged = last.version == self.version
                && self
                    .entries
                    .iter()
                    .filter(applies)
                    .all(|entry| expected.next() == Some(&entry.created))
                && expected.next().is_none();
            if unchanged {
                return last.header.clone();
            }
        }
        let mut matched: Vec<&Entry> = self.entries.iter().filter(applies).collect();
        let seqs = matched.iter().map(|entry| entry.created).collect();
        matched.sort_by(|a, b| {
            b.cookie
                .path
                .len()
                .cmp(&a.cookie.path.len())
                .then_with(|| a.created.cmp(&b.created))
        });
        let header = if matched.is_empty() {
            None
        } else {
            let mut header = String::new();
            let mut names = Vec::with_capacity(matched.len());
            for entry in matched {
                let (name, value) = entry.cookie.name_value();
                if !header.is_empty() {
                    header.push_str("; ");
                }
                header.push_str(name);
                header.push('=');
                header.push_str(value);
                names.push(name.to_owned());
            }
            // Stored names and values passed the control-character check, so this cannot fail
            // in practice; a cookie that somehow would is better not sent than sent mangled.
            HeaderValue::try_from(header)
                .ok()
                .map(|value| (value, Arc::from(names)))
        };
        self.last_header = Some(Box::new(LastHeader {
            version: self.version,
            seqs,
            header: header.clone(),
        }));
        header
    }

    /// Reads every `Set-Cookie` of a response from `url` and returns the names stored or
    /// deleted. Invalid lines are ignored (and logged by name only).
    pub fn absorb(&mut self, url: &Url, headers: &HeaderMap, now: SystemTime) -> Vec<String> {
        let mut changed = Vec::new();
        for value in headers.get_all(SET_COOKIE) {
            let line = match std::str::from_utf8(value.as_bytes()) {
                Ok(line) => line,
                Err(_) => {
                    tracing::debug!(reason = %Rejected::NotUtf8, "Set-Cookie ignored");
                    continue;
                }
            };
            match self.absorb_line(url, line, now) {
                Ok((name, _)) => changed.push(name),
                Err((name, reason)) => {
                    tracing::debug!(cookie = %name, %reason, "Set-Cookie ignored");
                }
            }
        }
        changed
    }

    /// One `Set-Cookie` value. On rejection, the cookie name (possibly empty) and the reason.
    pub fn absorb_line(
        &mut self,
        url: &Url,
        line: &str,
        now: SystemTime,
    ) -> Result<(String, Absorbed), (String, Rejected)> {
        // Before parsing, so that a rejected line's name can be reported without its value.
        let name = line
            .split(';')
            .next()
            .and_then(|pair| pair.split_once('='))
            .map_or("", |(name, _)| name.trim())
            .to_owned();
        match self.try_absorb(url, line, OffsetDateTime::from(now)) {
            Ok(outcome) => Ok((name, outcome)),
            Err(reason) => Err((name, reason)),
        }
    }

    fn try_absorb(
        &mut self,
        url: &Url,
        line: &str,
        now: OffsetDateTime,
    ) -> Result<Absorbed, Rejected> {
        // RFC 6265bis §5.6: CTLs other than HTAB anywhere in the line void it.
        if line.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Rejected::ControlCharacter);
        }
        let mut raw = RawCookie::parse(line).map_err(|_| Rejected::Malformed)?;
        let (name, value) = raw.name_value();
        if name.len() + value.len() > MAX_NAME_VALUE_BYTES {
            return Err(Rejected::TooLarge);
        }
        let https = url.scheme() == "https";
        let secure = raw.secure() == Some(true);
        if secure && !https {
            return Err(Rejected::SecureOverHttp);
        }
        if has_prefix(name, "__Secure-") && !(secure && https) {
            return Err(Rejected::SecurePrefix);
        }
        if has_prefix(name, "__Host-")
            && !(secure && https && raw.domain().is_none() && raw.path() == Some("/"))
        {
            return Err(Rejected::HostPrefix);
        }
        // The cookie crate trims any Unicode whitespace and cookie_store trims again after the
        // crate strips the dot, so `Domain=. example.com` would become `example.com`; the
        // attribute is read here as RFC 6265 §5.2.3 says and handed over already decided.
        match domain_attribute(line) {
            Some(domain) if !domain.is_empty() => {
                let host = match Host::parse(&domain) {
                    Ok(host) => host,
                    // Not a host name at all (` example.com`), so no request host matches it.
                    Err(_) => return Err(Rejected::DomainMismatch),
                };
                let domain = host.to_string();
                if matches!(host, Host::Domain(_)) && SuffixList::system().is_public_suffix(&domain)
                {
                    // RFC 6265 §5.3 step 5: a public suffix equal to the host means host-only.
                    if url.host_str() == Some(domain.as_str()) {
                        raw.unset_domain();
                    } else {
                        return Err(Rejected::PublicSuffix);
                    }
                } else if !domain_matches(url, &host, &domain) {
                    return Err(Rejected::DomainMismatch);
                } else {
                    raw.set_domain(domain);
                }
            }
            // No Domain attribute, or `Domain=.`: a host-only cookie (§5.3 step 6).
            _ => raw.unset_domain(),
        }
        let mut cookie = Cookie::try_from_raw_cookie(&raw, url)
            .map_err(|_| Rejected::DomainMismatch)?
            .into_owned();
        // cookie_store dates a positive Max-Age from the system clock; it counts from `now`
        // here, so that expiry follows the clock the jar is given. A zero or negative Max-Age
        // already reads as expired.
        if let Some(expiry) = raw
            .max_age()
            .filter(|max_age| max_age.is_positive())
            .and_then(|max_age| now.checked_add(max_age))
        {
            cookie.expires = CookieExpiration::from(expiry);
        }
        self.store(cookie, now)
    }

    /// RFC 6265 §5.3 steps 11–12 for a parsed cookie: replace the cookie with the same name,
    /// domain and path (keeping its creation time), delete it when the new one has expired.
    fn store(
        &mut self,
        cookie: Cookie<'static>,
        now: OffsetDateTime,
    ) -> Result<Absorbed, Rejected> {
        self.version += 1;
        // Expired cookies are evicted first (§5.3), so one cannot lend its creation time.
        self.entries.retain(|entry| !entry.cookie.expires_by(&now));
        let existing = self
            .entries
            .iter()
            .position(|entry| same_identity(&entry.cookie, &cookie));
        match (existing, cookie.expires_by(&now)) {
            (Some(index), true) => {
                self.entries.remove(index);
                Ok(Absorbed::Deleted)
            }
            (None, true) => Err(Rejected::ExpiredUnknown),
            (Some(index), false) => {
                self.entries[index].cookie = cookie;
                Ok(Absorbed::Stored)
            }
            (None, false) => {
                // Exact growth: the first cookie of a session must not reserve room for four.
                self.entries.reserve_exact(1);
                self.entries.push(Entry {
                    cookie,
                    created: self.next_seq,
                });
                self.next_seq += 1;
                Ok(Absorbed::Stored)
            }
        }
    }

    fn unexpired(&self, now: SystemTime) -> impl Iterator<Item = &Entry> {
        let now = Now::new(now);
        self.entries
            .iter()
            .filter(move |entry| !now.expires(&entry.cookie))
    }

    /// True when no unexpired cookie is left.
    pub fn is_empty(&self, now: SystemTime) -> bool {
        self.unexpired(now).next().is_none()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.version += 1;
    }

    /// Names of the unexpired cookies, oldest first: for `/sessions`, never the values.
    pub fn names(&self, now: SystemTime) -> Vec<String> {
        let mut entries: Vec<&Entry> = self.unexpired(now).collect();
        entries.sort_by_key(|entry| entry.created);
        entries
            .into_iter()
            .map(|entry| entry.cookie.name().to_owned())
            .collect()
    }

    /// The unexpired cookies, session cookies included, for the state file.
    pub(crate) fn to_stored(&self, now: SystemTime) -> Vec<StoredCookie> {
        self.unexpired(now)
            .map(|entry| StoredCookie {
                created: entry.created,
                cookie: entry.cookie.clone(),
            })
            .collect()
    }

    /// A jar from the state file; cookies that expired meanwhile are dropped.
    pub(crate) fn from_stored(cookies: Vec<StoredCookie>, now: SystemTime) -> Jar {
        let now = OffsetDateTime::from(now);
        let mut jar = Jar::new();
        for stored in cookies {
            if stored.cookie.expires_by(&now) {
                continue;
            }
            jar.next_seq = jar.next_seq.max(stored.created + 1);
            match jar
                .entries
                .iter()
                .position(|entry| same_identity(&entry.cookie, &stored.cookie))
            {
                // A hand-edited file may repeat a cookie: the later line wins, as a later
                // Set-Cookie would.
                Some(index) => jar.entries[index].cookie = stored.cookie,
                None => jar.entries.push(Entry {
                    cookie: stored.cookie,
                    created: stored.created,
                }),
            }
        }
        jar.entries.shrink_to_fit();
        jar
    }
}

/// The time a cookie's expiry is compared with, as the calendar time that comparison takes,
/// converted only when a cookie with an expiry asks: a session cookie (no `Expires` or
/// `Max-Age`, what targets usually set) never expires, and the conversion costs more than
/// the rest of a lookup in the jar, which runs twice for every session request.
struct Now {
    wall: SystemTime,
    utc: OnceCell<OffsetDateTime>,
}

impl Now {
    fn new(wall: SystemTime) -> Now {
        Now {
            wall,
            utc: OnceCell::new(),
        }
    }

    /// `Cookie::expires_by` at this time.
    fn expires(&self, cookie: &Cookie<'_>) -> bool {
        match cookie.expires {
            CookieExpiration::SessionEnd => false,
            CookieExpiration::AtUtc(_) => {
                cookie.expires_by(self.utc.get_or_init(|| OffsetDateTime::from(self.wall)))
            }
        }
    }
}

/// RFC 6265 §5.3 step 11: cookies are the same cookie when name, domain and path are equal.
fn same_identity(a: &Cookie<'static>, b: &Cookie<'static>) -> bool {
    a.name() == b.name() && a.domain.as_cow() == b.domain.as_cow() && *a.path == *b.path
}

impl fmt::Debug for Jar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names as stored, expired or not: printing has no clock to judge expiry by.
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by_key(|entry| entry.created);
        let names: Vec<&str> = entries.iter().map(|entry| entry.cookie.name()).collect();
        f.debug_struct("Jar").field("cookies", &names).finish()
    }
}

/// RFC 6265 §5.2.3 over the attributes of a `Set-Cookie` line: the cookie-domain of the last
/// `Domain` attribute with a value (an empty one is ignored, as is one over 1024 bytes per
/// RFC 6265bis), lower-cased, with one leading dot removed; `None` when there is none.
/// Attribute names and values lose their surrounding WSP (space and tab) only (§5.2).
fn domain_attribute(line: &str) -> Option<String> {
    let wsp: &[char] = &[' ', '\t'];
    let mut found = None;
    for attribute in line.split(';').skip(1) {
        let (name, value) = attribute.split_once('=').unwrap_or((attribute, ""));
        if !name.trim_matches(wsp).eq_ignore_ascii_case("domain") {
            continue;
        }
        let value = value.trim_matches(wsp);
        if value.is_empty() || value.len() > 1024 {
            continue;
        }
        let domain = value.strip_prefix('.').unwrap_or(value);
        found = Some(domain.to_ascii_lowercase());
    }
    found
}

/// RFC 6265 §5.1.3: the request host domain-matches `domain` when it is the same, or when it
/// is a host name (not an IP address) that ends with `.` + `domain`.
fn domain_matches(url: &Url, host: &Host<String>, domain: &str) -> bool {
    let Some(request) = url.host_str() else {
        return false;
    };
    if request.eq_ignore_ascii_case(domain) {
        return true;
    }
    matches!(host, Host::Domain(_))
        && matches!(url.host(), Some(Host::Domain(_)))
        && request.len() > domain.len()
        && request.to_ascii_lowercase().ends_with(domain)
        && request.as_bytes()[request.len() - domain.len() - 1] == b'.'
}

/// RFC 6265 §5.1.4 path-match of a request path against a cookie path.
fn path_matches(cookie_path: &str, request_path: &str) -> bool {
    match request_path.strip_prefix(cookie_path) {
        Some(rest) => rest.is_empty() || cookie_path.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// Cookie prefixes are matched case-insensitively (RFC 6265bis §4.1.3).
fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    /// Wall time for the tests that do not move it.
    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn set(jar: &mut Jar, at: &str, line: &str) -> Result<Absorbed, Rejected> {
        set_at(jar, at, line, now())
    }

    fn set_at(jar: &mut Jar, at: &str, line: &str, now: SystemTime) -> Result<Absorbed, Rejected> {
        jar.absorb_line(&url(at), line, now)
            .map(|(_, outcome)| outcome)
            .map_err(|(_, reason)| reason)
    }

    fn header(jar: &mut Jar, at: &str) -> Option<String> {
        header_at(jar, at, now())
    }

    fn header_at(jar: &mut Jar, at: &str, now: SystemTime) -> Option<String> {
        let at = url(at);
        jar.cookie_header(&at, at.path(), now)
            .map(|(value, _)| value.to_str().unwrap().to_owned())
    }

    #[test]
    fn host_only_cookie_is_not_sent_to_subdomains() {
        let mut jar = Jar::new();
        set(&mut jar, "https://example.com/", "a=1").unwrap();
        assert_eq!(
            header(&mut jar, "https://example.com/x").as_deref(),
            Some("a=1")
        );
        assert_eq!(header(&mut jar, "https://api.example.com/x"), None);
    }

    #[test]
    fn domain_cookie_is_sent_to_subdomains_but_not_to_lookalikes() {
        let mut jar = Jar::new();
        set(
            &mut jar,
            "https://www.example.com/",
            "a=1; Domain=example.com",
        )
        .unwrap();
        assert_eq!(
            header(&mut jar, "https://example.com/").as_deref(),
            Some("a=1")
        );
        assert_eq!(
            header(&mut jar, "https://api.example.com/").as_deref(),
            Some("a=1")
        );
        assert_eq!(header(&mut jar, "https://badexample.com/"), None);
        assert_eq!(header(&mut jar, "https://example.org/"), None);
    }

    #[test]
    fn domain_attribute_for_another_site_is_rejected() {
        let mut jar = Jar::new();
        assert_eq!(
            set(
                &mut jar,
                "https://www.example.com/",
                "a=1; Domain=other.com"
            ),
            Err(Rejected::DomainMismatch)
        );
        assert!(jar.is_empty(now()));
    }

    #[test]
    fn path_matching_follows_rfc_6265_section_5_1_4() {
        let mut jar = Jar::new();
        set(&mut jar, "https://example.com/", "a=1; Path=/api").unwrap();
        assert_eq!(
            header(&mut jar, "https://example.com/api").as_deref(),
            Some("a=1")
        );
        assert_eq!(
            header(&mut jar, "https://example.com/api/x").as_deref(),
            Some("a=1")
        );
        assert_eq!(header(&mut jar, "https://example.com/apis"), None);
        assert_eq!(header(&mut jar, "https://example.com/"), None);
    }

    #[test]
    fn default_path_is_the_request_directory() {
        let mut jar = Jar::new();
        set(&mut jar, "https://example.com/osmc/api/accounts", "a=1").unwrap();
        assert_eq!(
            header(&mut jar, "https://example.com/osmc/api/x").as_deref(),
            Some("a=1")
        );
        assert_eq!(header(&mut jar, "https://example.com/osmc/other"), None);
    }

    #[test]
    fn secure_cookie_from_plain_http_is_rejected_even_on_loopback() {
        let mut jar = Jar::new();
        for origin in [
            "http://localhost:8080/",
            "http://127.0.0.1/",
            "http://example.com/",
        ] {
            assert_eq!(
                set(&mut jar, origin, "a=1; Secure"),
                Err(Rejected::SecureOverHttp),
                "{origin}"
            );
        }
        assert!(jar.is_empty(now()));
    }

    #[test]
    fn secure_cookie_is_sent_only_over_https_even_to_loopback() {
        let mut jar = Jar::new();
        set(&mut jar, "https://localhost/", "a=1; Secure").unwrap();
        set(&mut jar, "https://localhost/", "b=2").unwrap();
        assert_eq!(
            header(&mut jar, "https://localhost/").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            header(&mut jar, "http://localhost/").as_deref(),
            Some("b=2")
        );
    }

    #[test]
    fn max_age_sets_an_expiry_and_takes_precedence_over_expires() {
        let mut jar = Jar::new();
        set(
            &mut jar,
            "https://example.com/",
            "a=1; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:01 GMT",
        )
        .unwrap();
        assert_eq!(
            header(&mut jar, "https://example.com/").as_deref(),
            Some("a=1")
        );
        let stored = jar.to_stored(now());
        assert!(stored[0].cookie.is_persistent());
        assert!(!stored[0].cookie.is_expired());
    }

    #[test]
    fn expires_in_the_future_is_kept_and_in_the_past_is_not_stored() {
        let mut jar = Jar::new();
        set(
            &mut jar,
            "https://example.com/",
            "a=1; Expires=Fri, 01 Jan 2100 00:00:00 GMT",
        )
        .unwrap();
        assert_eq!(
            set(
                &mut jar,
                "https://example.com/",
                "b=2; Expires=Thu, 01 Jan 1970 00:00:01 GMT"
            ),
            Err(Rejected::ExpiredUnknown)
        );
        assert_eq!(
            header(&mut jar, "https://example.com/").as_deref(),
            Some("a=1")
        );
    }

    #[test]
    fn max_age_zero_deletes_the_stored_cookie() {
        let mut jar = Jar::new();
        set(&mut jar, "https://example.com/", "JSESSIONID=abc; Path=/").unwrap();
        assert_eq!(
            set(
                &mut jar,
                "https://example.com/",
                "JSESSIONID=; Path=/; Max-Age=0"
            ),
            Ok(Absorbed::Deleted)
        );
        assert!(jar.is_empty(now()));
        assert_eq!(header(&mut jar, "https://example.com/"), None);
    }

    #[test]
    fn past_expires_deletes_the_stored_cookie() {
        let mut jar = Jar::new();
        set(&mut jar, "https://example.com/", "a=1; Path=/").unwrap();
        assert_eq!(
            set(
                &mut jar,
                "https://example.com/",
                "a=x; Path=/; Expires=Thu, 01 Jan 1970 00:00:01 GMT"
            ),
            Ok(Absorbed::Deleted)
        );
        assert!(jar.is_empty(now()));
    }

    #[test]
    fn secure_prefix_requires_secure_over_https() {
        let mut jar = Jar::new();
        assert_eq!(
            set(&mut jar, "https://example.com/", "__Secure-a=1"),
            Err(Rejected::SecurePrefix)
        );
        assert_eq!(
            set(&mut jar, "http://example.com/", "__secure-a=1"),
            Err(Rejected::SecurePrefix)
        );
        assert_eq!(
            set(&mut jar, "https://example.com/", "__Secure-a=1; Secure"),
            Ok(Absorbed::Stored)
        );
    }

    #[test]
    fn host_prefix_requires_secure_root_path_and_no_domain() {
        let mut jar = Jar::new();
        let at = "https://www.example.com/x/y";
        for line in [
            "__Host-a=1; Path=/",
            "__Host-a=1; Secure",
            "__Host-a=1; Secure; Path=/x",
            "__Host-a=1; Secure; Path=/; Domain=example.com",
        ] {
            assert_eq!(set(&mut jar, at, line), Err(Rejected::HostPrefix), "{line}");
        }
        assert_eq!(
            set(&mut jar, at, "__Host-a=1; Secure; Path=/"),
            Ok(Absorbed::Stored)
        );
    }

    #[test]
    fn single_label_public_suffix_domain_is_rejected() {
        let mut jar = Jar::new();
        for line in ["a=1; Domain=.com", "a=1; Domain=com", "a=1; Domain=COM"] {
            assert_eq!(
                set(&mut jar, "https://www.example.com/", line),
                Err(Rejected::PublicSuffix),
                "{line}"
            );
        }
        assert!(jar.is_empty(now()));
    }

    #[test]
    fn listed_public_suffix_domain_is_rejected() {
        assert!(
            std::path::Path::new(super::super::psl::SYSTEM_LIST).exists(),
            "this test needs Debian's publicsuffix package"
        );
        let mut jar = Jar::new();
        assert_eq!(
            set(&mut jar, "https://shop.example.co.uk/", "a=1; Domain=co.uk"),
            Err(Rejected::PublicSuffix)
        );
        assert_eq!(
            set(&mut jar, "https://me.github.io/", "a=1; Domain=github.io"),
            Err(Rejected::PublicSuffix)
        );
        assert_eq!(
            set(
                &mut jar,
                "https://shop.example.co.uk/",
                "a=1; Domain=example.co.uk"
            ),
            Ok(Absorbed::Stored)
        );
    }

    #[test]
    fn public_suffix_domain_equal_to_the_host_becomes_host_only() {
        let mut jar = Jar::new();
        set(&mut jar, "http://localhost:8080/", "a=1; Domain=localhost").unwrap();
        assert_eq!(
            header(&mut jar, "http://localhost:8080/").as_deref(),
            Some("a=1")
        );
    }

    #[test]
    fn control_characters_void_the_cookie() {
        let mut jar = Jar::new();
        for line in ["a=1\u{1}", "a\u{0}b=1", "a=1\u{7f}", "a=\u{1b}[31m"] {
            assert_eq!(
                set(&mut jar, "https://example.com/", line),
                Err(Rejected::ControlCharacter),
                "{line:?}"
            );
        }
        assert_eq!(
            set(&mut jar, "https://example.com/", "a=1\t"),
            Ok(Absorbed::Stored)
        );
    }

    #[test]
    fn domain_with_whitespace_before_the_leading_dot_is_that_domain() {
        let mut jar = Jar::new();
        for line in [
            "a=1; Domain= .example.com",
            "a=1; Domain=\t.example.com ",
            "a=1;domain  =  .EXAMPLE.com",
        ] {
            jar.clear();
            assert_eq!(
                set(&mut jar, "https://www.example.com/", line),
                Ok(Absorbed::Stored),
                "{line:?}"
            );
            assert_eq!(
                header(&mut jar, "https://api.example.com/").as_deref(),
                Some("a=1"),
                "{line:?} is a domain cookie for example.com"
            );
        }
    }

    #[test]
    fn domain_with_whitespace_after_the_leading_dot_matches_no_host() {
        // §5.2.3 removes the dot only; " example.com" is not a name any request host matches.
        let mut jar = Jar::new();
        for line in ["a=1; Domain=. example.com", "a=1; Domain=..example.com"] {
            assert_eq!(
                set(&mut jar, "https://www.example.com/", line),
                Err(Rejected::DomainMismatch),
                "{line:?}"
            );
        }
        assert!(jar.is_empty(now()));
    }

    #[test]
    fn the_last_domain_attribute_with_a_value_wins() {
        let mut jar = Jar::new();
        // An empty Domain is ignored, so the earlier one stays in force.
        set(
            &mut jar,
            "https://www.example.com/",
            "a=1; Domain=other.com; Domain=example.com; Domain=",
        )
        .unwrap();
        assert_eq!(
            header(&mut jar, "https://api.example.com/").as_deref(),
            Some("a=1")
        );
        assert_eq!(
            set(
                &mut jar,
                "https://www.example.com/",
                "b=1; Domain=example.com; Domain=other.com"
            ),
            Err(Rejected::DomainMismatch)
        );
    }

    #[test]
    fn a_lone_dot_domain_makes_a_host_only_cookie() {
        let mut jar = Jar::new();
        set(&mut jar, "https://www.example.com/", "a=1; Domain=.").unwrap();
        assert_eq!(
            header(&mut jar, "https://www.example.com/").as_deref(),
            Some("a=1")
        );
        assert_eq!(header(&mut jar, "https://api.www.example.com/"), None);
    }

    #[test]
    fn an_ip_address_domain_must_equal_the_host() {
        let mut jar = Jar::new();
        set(&mut jar, "http://127.0.0.1:8080/", "a=1; Domain=127.0.0.1").unwrap();
        assert_eq!(
            header(&mut jar, "http://127.0.0.1:8080/").as_deref(),
            Some("a=1")
        );
        assert_eq!(
            set(&mut jar, "http://127.0.0.1/", "b=1; Domain=0.0.1"),
            Err(Rejected::DomainMismatch)
        );
    }

    #[test]
    fn one_bad_set_cookie_line_is_ignored_and_the_others_of_the_response_are_kept() {
        let mut jar = Jar::new();
        let mut headers = HeaderMap::new();
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("JSESSIONID=s1; Path=/"),
        );
        // HeaderValue refuses most control characters, but takes obs-text bytes: not UTF-8.
        headers.append(
            SET_COOKIE,
            HeaderValue::from_bytes(b"bad=\xff\xfe; Path=/").unwrap(),
        );
        headers.append(SET_COOKIE, HeaderValue::from_static("lb=node2; Path=/"));
        let names = jar.absorb(&url("https://example.com/"), &headers, now());
        assert_eq!(names, ["JSESSIONID", "lb"]);
    }

    #[test]
    fn oversized_cookie_is_rejected() {
        let mut jar = Jar::new();
        let line = format!("a={}", "x".repeat(MAX_NAME_VALUE_BYTES));
        assert_eq!(
            set(&mut jar, "https://example.com/", &line),
            Err(Rejected::TooLarge)
        );
    }

    #[test]
    fn header_order_is_longer_path_first_then_oldest_first() {
        let mut jar = Jar::new();
        let at = "https://example.com/a/b/c";
        set(&mut jar, at, "first=1; Path=/").unwrap();
        set(&mut jar, at, "deep=2; Path=/a/b").unwrap();
        set(&mut jar, at, "second=3; Path=/").unwrap();
        set(&mut jar, at, "middle=4; Path=/a").unwrap();
        set(&mut jar, at, "third=5; Path=/").unwrap();
        // Replacing a cookie keeps its creation time, so `first` stays first among Path=/.
        set(&mut jar, at, "first=6; Path=/").unwrap();
        let (value, names) = jar.cookie_header(&url(at), "/a/b/c", now()).unwrap();
        assert_eq!(
            value.to_str().unwrap(),
            "deep=2; middle=4; first=6; second=3; third=5"
        );
        assert_eq!(*names, ["deep", "middle", "first", "second", "third"]);
    }

    #[test]
    fn absorb_reads_every_set_cookie_and_reports_names() {
        let mut jar = Jar::new();
        let mut headers = HeaderMap::new();
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("JSESSIONID=s1; Path=/; HttpOnly"),
        );
        headers.append(SET_COOKIE, HeaderValue::from_static("lb=node2; Path=/"));
        headers.append(SET_COOKIE, HeaderValue::from_static("bad=1; Domain=com"));
        let names = jar.absorb(
            &url("https://example.com/osmc/api/accounts"),
            &headers,
            now(),
        );
        assert_eq!(names, ["JSESSIONID", "lb"]);
        assert_eq!(
            header(&mut jar, "https://example.com/osmc/api/accounts/1").as_deref(),
            Some("JSESSIONID=s1; lb=node2")
        );
    }

    #[test]
    fn rotated_session_id_replaces_the_old_one() {
        let mut jar = Jar::new();
        set(&mut jar, "https://example.com/", "JSESSIONID=old; Path=/").unwrap();
        set(&mut jar, "https://example.com/", "JSESSIONID=new; Path=/").unwrap();
        assert_eq!(
            header(&mut jar, "https://example.com/").as_deref(),
            Some("JSESSIONID=new")
        );
    }

    #[test]
    fn kept_header_follows_rotation_expiry_and_path() {
        let mut jar = Jar::new();
        let at = "https://example.com/api/x";
        set(&mut jar, at, "sid=one; Path=/").unwrap();
        set(&mut jar, at, "api=1; Path=/api").unwrap();
        assert_eq!(header(&mut jar, at).as_deref(), Some("api=1; sid=one"));
        // Same cookies for another path under /api: the kept header is right.
        assert_eq!(
            header(&mut jar, "https://example.com/api/y").as_deref(),
            Some("api=1; sid=one")
        );
        // Outside /api, fewer cookies apply.
        assert_eq!(
            header(&mut jar, "https://example.com/other").as_deref(),
            Some("sid=one")
        );
        // A rotated value is sent at once.
        set(&mut jar, at, "sid=two; Path=/").unwrap();
        assert_eq!(header(&mut jar, at).as_deref(), Some("api=1; sid=two"));
        // A deleted cookie is gone at once.
        set(&mut jar, at, "api=; Path=/api; Max-Age=0").unwrap();
        assert_eq!(header(&mut jar, at).as_deref(), Some("sid=two"));
        jar.clear();
        assert_eq!(header(&mut jar, at), None);
    }

    #[test]
    fn expired_cookie_leaves_the_header_and_is_evicted() {
        use crate::clock::{Clock, ManualClock};
        let clock = ManualClock::new();
        let mut jar = Jar::new();
        let at = "https://example.com/";
        set_at(&mut jar, at, "sid=1; Path=/", clock.wall()).unwrap();
        set_at(&mut jar, at, "short=1; Path=/; Max-Age=1", clock.wall()).unwrap();
        clock.advance(std::time::Duration::from_millis(999));
        assert_eq!(
            header_at(&mut jar, at, clock.wall()).as_deref(),
            Some("sid=1; short=1")
        );
        clock.advance(std::time::Duration::from_millis(1));
        assert_eq!(
            header_at(&mut jar, at, clock.wall()).as_deref(),
            Some("sid=1")
        );
        // The expired cookie was evicted: set again, it is a new cookie, younger than `sid`.
        set_at(&mut jar, at, "short=2; Path=/", clock.wall()).unwrap();
        assert_eq!(
            header_at(&mut jar, at, clock.wall()).as_deref(),
            Some("sid=1; short=2")
        );
        assert_eq!(jar.names(clock.wall()), ["sid", "short"]);
    }

    #[test]
    fn max_age_counts_from_the_given_time_not_the_system_clock() {
        use crate::clock::{Clock, ManualClock};
        let clock = ManualClock::new();
        // A clock a day ahead of the system's: a one-minute cookie must live a minute from it.
        clock.advance(std::time::Duration::from_secs(86_400));
        let mut jar = Jar::new();
        let at = "https://example.com/";
        set_at(&mut jar, at, "sid=1; Max-Age=60", clock.wall()).unwrap();
        assert_eq!(
            header_at(&mut jar, at, clock.wall()).as_deref(),
            Some("sid=1")
        );
        clock.advance(std::time::Duration::from_secs(60));
        assert_eq!(header_at(&mut jar, at, clock.wall()), None);
    }

    #[test]
    fn debug_shows_names_but_never_values() {
        let mut jar = Jar::new();
        set(&mut jar, "https://example.com/", "JSESSIONID=topsecret").unwrap();
        let shown = format!("{jar:?}");
        assert!(
            shown.contains("JSESSIONID") && !shown.contains("topsecret"),
            "{shown}"
        );
    }

    #[test]
    fn clear_empties_the_jar() {
        let mut jar = Jar::new();
        set(&mut jar, "https://example.com/", "a=1").unwrap();
        assert!(!jar.is_empty(now()));
        jar.clear();
        assert!(jar.is_empty(now()));
        assert_eq!(header(&mut jar, "https://example.com/"), None);
    }

    #[test]
    fn stored_form_keeps_session_cookies_and_creation_order() {
        let mut jar = Jar::new();
        set(&mut jar, "https://example.com/", "b=1; Path=/").unwrap();
        set(&mut jar, "https://example.com/", "a=2; Path=/").unwrap();
        let json = serde_json::to_string(&jar.to_stored(now())).unwrap();
        let mut back = Jar::from_stored(serde_json::from_str(&json).unwrap(), now());
        assert_eq!(
            header(&mut back, "https://example.com/").as_deref(),
            Some("b=1; a=2")
        );
        assert_eq!(back.names(now()), ["b", "a"]);
    }
}
