//! The rules of a session token (`[[routes.session.tokens]]`): where its value is read from in
//! a response (`from`), which request header carries it (`to`) and how it is written there
//! (`format`). Shared vocabulary at the crate root, depending on nothing above it: config
//! validation parses the rules into the plan, and the session's tokens and the pipeline's
//! `token_fetch` phase (`session::tokens`) apply them.

use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Where a token is read from in a response (`from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFrom {
    /// `header:NAME`: the response header's value.
    Header(HeaderName),
    /// `json:/pointer`: a string (or number) in the JSON response body, by RFC 6901 pointer.
    Json(String),
    /// `cookie:NAME`: the value of the cookie the response sets.
    Cookie(String),
}

impl TokenFrom {
    /// Parses `header:NAME`, `json:/pointer` or `cookie:NAME`; the error says what to write.
    pub fn parse(text: &str) -> Result<TokenFrom, String> {
        const EXPECTED: &str = "expected header:NAME, json:/json/pointer or cookie:NAME";
        let Some((kind, rest)) = text.split_once(':') else {
            return Err(format!("{text:?} names no source; {EXPECTED}"));
        };
        match kind.trim() {
            "header" => header_name(rest).map(TokenFrom::Header),
            "json" => {
                let pointer = rest.trim();
                if !pointer.starts_with('/') {
                    return Err(format!(
                        "{pointer:?} is not a JSON pointer; write it as json:/field (json:/d/token for a nested one)"
                    ));
                }
                Ok(TokenFrom::Json(pointer.to_owned()))
            }
            "cookie" => {
                let name = rest.trim();
                if name.is_empty() || name.contains([';', '=', ' ', ',']) {
                    return Err(format!("{name:?} is not a cookie name"));
                }
                Ok(TokenFrom::Cookie(name.to_owned()))
            }
            other => Err(format!("unknown source {other:?}; {EXPECTED}")),
        }
    }

    /// The field a JSON source names (the pointer's last segment), so that the trace redacts it
    /// wherever it shows up.
    pub fn json_field(&self) -> Option<&str> {
        match self {
            TokenFrom::Json(pointer) => pointer.rsplit('/').next().filter(|f| !f.is_empty()),
            _ => None,
        }
    }

    /// The header a header source names.
    pub fn header(&self) -> Option<&HeaderName> {
        match self {
            TokenFrom::Header(name) => Some(name),
            _ => None,
        }
    }

    /// The value in a response's headers (header and cookie sources); `None` for a JSON source
    /// or when the response does not carry it.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<String> {
        match self {
            TokenFrom::Header(name) => headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned),
            TokenFrom::Cookie(name) => headers
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .filter_map(|value| value.split(';').next())
                .filter_map(|pair| pair.split_once('='))
                .filter(|(cookie, _)| cookie.trim() == name)
                .map(|(_, value)| value.trim().trim_matches('"'))
                .rfind(|value| !value.is_empty())
                .map(str::to_owned),
            TokenFrom::Json(_) => None,
        }
    }

    /// The value in a response body (JSON sources): a non-empty string, or a number as written.
    pub fn from_body(&self, body: &[u8]) -> Option<String> {
        let TokenFrom::Json(pointer) = self else {
            return None;
        };
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        match value.pointer(pointer)? {
            serde_json::Value::String(text) if !text.is_empty() => Some(text.clone()),
            serde_json::Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    }

    /// The source as the config writes it.
    pub fn spelling(&self) -> String {
        match self {
            TokenFrom::Header(name) => format!("header:{name}"),
            TokenFrom::Json(pointer) => format!("json:{pointer}"),
            TokenFrom::Cookie(name) => format!("cookie:{name}"),
        }
    }

    /// What the source names, for an error message (never a value).
    pub fn describe(&self) -> String {
        match self {
            TokenFrom::Header(name) => format!("{name} header"),
            TokenFrom::Json(pointer) => format!("JSON value at {pointer}"),
            TokenFrom::Cookie(name) => format!("{name} cookie"),
        }
    }

    /// Whether the value is in the body rather than the headers.
    pub fn needs_body(&self) -> bool {
        matches!(self, TokenFrom::Json(_))
    }
}

/// Where a token goes on a request (`to`): only a header so far.
pub fn parse_to(text: &str) -> Result<HeaderName, String> {
    let Some(("header", rest)) = text.split_once(':').map(|(kind, rest)| (kind.trim(), rest))
    else {
        return Err(format!(
            "{text:?} is not a destination; expected header:NAME"
        ));
    };
    let name = header_name(rest)?;
    // These are the proxy's own business: the jar, the target's address, the framing.
    if [
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
    ]
    .contains(&name.as_str())
    {
        return Err(format!(
            "{name} cannot carry a token; name the header the target reads it from"
        ));
    }
    Ok(name)
}

fn header_name(text: &str) -> Result<HeaderName, String> {
    let text = text.trim();
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("{text:?} is not a header name"))
}

/// How the value is written in the header (`format`): `{}` stands for the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenFormat {
    prefix: String,
    suffix: String,
}

impl TokenFormat {
    /// Parses a format with exactly one `{}`, and no character a header value cannot hold.
    pub fn parse(text: &str) -> Result<TokenFormat, String> {
        let mut parts = text.split("{}");
        let (Some(prefix), Some(suffix), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "{text:?} must hold exactly one {{}} where the value goes, like \"Session {{}}\""
            ));
        };
        if HeaderValue::from_str(&format!("{prefix}x{suffix}")).is_err() {
            return Err(format!("{text:?} holds characters a header value cannot"));
        }
        Ok(TokenFormat {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The format as the config writes it.
    pub fn spelling(&self) -> String {
        format!("{}{{}}{}", self.prefix, self.suffix)
    }

    /// The header value for `value`, marked sensitive; `None` when the target handed out a
    /// value a header cannot hold.
    pub fn header_value(&self, value: &str) -> Option<HeaderValue> {
        let mut header =
            HeaderValue::from_str(&format!("{}{value}{}", self.prefix, self.suffix)).ok()?;
        header.set_sensitive(true);
        Some(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_parses_each_source_and_refuses_a_misspelling_with_the_fix() {
        assert_eq!(
            TokenFrom::parse("header:X-CSRF-Token"),
            Ok(TokenFrom::Header(HeaderName::from_static("x-csrf-token")))
        );
        assert_eq!(
            TokenFrom::parse("json:/sessionId"),
            Ok(TokenFrom::Json("/sessionId".into()))
        );
        assert_eq!(
            TokenFrom::parse("cookie:XSRF-TOKEN"),
            Ok(TokenFrom::Cookie("XSRF-TOKEN".into()))
        );
        let err = TokenFrom::parse("heder:X-CSRF-Token").unwrap_err();
        assert!(err.contains("unknown source \"heder\""), "{err}");
        assert!(err.contains("header:NAME"), "{err}");
        assert!(TokenFrom::parse("json:sessionId")
            .unwrap_err()
            .contains("JSON pointer"));
        assert!(TokenFrom::parse("header:bad name").is_err());
        assert!(TokenFrom::parse("X-CSRF-Token").is_err());
    }

    #[test]
    fn to_is_a_header_and_never_one_the_proxy_owns() {
        assert_eq!(
            parse_to("header:Authorization"),
            Ok(HeaderName::from_static("authorization"))
        );
        assert!(parse_to("json:/x").unwrap_err().contains("header:NAME"));
        assert!(parse_to("headers:X-CSRF-Token").is_err());
        assert!(parse_to("header:Cookie").unwrap_err().contains("cannot"));
    }

    #[test]
    fn format_puts_the_value_in_place_of_the_braces_and_marks_it_sensitive() {
        let format = TokenFormat::parse("Session {}").unwrap();
        let value = format.header_value("abc").unwrap();
        assert_eq!(value, "Session abc");
        assert!(value.is_sensitive());
        assert_eq!(TokenFormat::default().header_value("t0k").unwrap(), "t0k");
        assert!(TokenFormat::parse("Session").is_err());
        assert!(TokenFormat::parse("{} {}").is_err());
        assert!(TokenFormat::parse("a\n{}").is_err());
        // A value a header cannot hold is not sent at all.
        assert!(format.header_value("a\r\nb").is_none());
    }

    #[test]
    fn capture_reads_headers_cookies_and_json_pointers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-csrf-token", HeaderValue::from_static(" t-1 "));
        headers.append(SET_COOKIE, HeaderValue::from_static("SID=s; Path=/"));
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("XSRF-TOKEN=x-2; Path=/; Secure"),
        );
        let header = TokenFrom::parse("header:X-CSRF-Token").unwrap();
        assert_eq!(header.from_headers(&headers).as_deref(), Some("t-1"));
        let cookie = TokenFrom::parse("cookie:XSRF-TOKEN").unwrap();
        assert_eq!(cookie.from_headers(&headers).as_deref(), Some("x-2"));
        assert_eq!(
            TokenFrom::parse("cookie:OTHER")
                .unwrap()
                .from_headers(&headers),
            None
        );
        let json = TokenFrom::parse("json:/d/sessionId").unwrap();
        assert!(json.needs_body());
        assert_eq!(json.json_field(), Some("sessionId"));
        assert_eq!(
            json.from_body(br#"{"d":{"sessionId":"abc"}}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(
            json.from_body(br#"{"d":{"sessionId":42}}"#).as_deref(),
            Some("42")
        );
        assert_eq!(json.from_body(br#"{"d":{"sessionId":""}}"#), None);
        assert_eq!(json.from_body(b"not json"), None);
        assert_eq!(json.from_headers(&headers), None);
    }
}
