//! A response head as hyper's server wrote it (the suite and clients rely on its choices):
//! lowercase names in the order the map holds them, the framing the response declares or its
//! body's exact size, else chunked to HTTP/1.1 clients and close-delimited to HTTP/1.0 ones, a
//! `date` when the response has none, and the `connection` header that says what happens next.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRAILER, TRANSFER_ENCODING};
use http::{HeaderValue, Method, StatusCode, Version};
use http_body::SizeHint;

/// How the response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoder {
    /// No body at all (HEAD, 1xx, 204, 304), whatever the headers say.
    None,
    Length(u64),
    Chunked,
    /// To the connection's close (an HTTP/1.0 client and no length).
    Close,
}

/// What the head says of the request it answers.
pub(super) struct Answering<'a> {
    pub method: &'a Method,
    pub version: Version,
    /// The client keeps the connection (HTTP/1.1 without `close`, HTTP/1.0 with `keep-alive`).
    pub keep_alive: bool,
}

/// Why a response head could not be written.
#[derive(Debug, thiserror::Error)]
#[error("invalid content-length in the response")]
pub(super) struct BadLength;

/// Writes the head into `out`; returns the body's encoder and whether the connection closes
/// after this response (`close` on entry: it must).
pub(super) fn head(
    out: &mut Vec<u8>,
    response: &http::response::Parts,
    body: (SizeHint, bool),
    request: &Answering<'_>,
    mut close: bool,
) -> Result<(Encoder, bool), BadLength> {
    let (hint, body_ended) = body;
    let status = response.status;
    let http10 = request.version == Version::HTTP_10;
    let is_head = request.method == Method::HEAD;
    let connect_ok = request.method == Method::CONNECT && status.is_success();
    let no_length = status.is_informational() || connect_ok || matches!(status.as_u16(), 204 | 304);
    let can_chunk = !(is_head || no_length);
    close |= !request.keep_alive;

    let reason = response.extensions.get::<hyper::ext::ReasonPhrase>();
    if !http10 && status == StatusCode::OK && reason.is_none() {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        match reason {
            Some(reason) => out.extend_from_slice(reason.as_bytes()),
            None => out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
    }

    let mut encoder = None;
    let mut wrote_date = false;
    let mut says_keep_alive = false;
    for (name, value) in &response.headers {
        if name == CONTENT_LENGTH {
            // hyper kept one Content-Length, and none on a body that has already ended but
            // for HEAD (the length of what GET would have sent).
            if encoder.is_some() || (body_ended && !is_head) {
                continue;
            }
            let length = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(BadLength)?;
            encoder = Some(Encoder::Length(length));
        } else if name == TRANSFER_ENCODING {
            if http10 || !can_chunk || encoder.is_some() {
                continue;
            }
            encoder = Some(Encoder::Chunked);
            line(out, name.as_str(), value);
            if !ends_in_chunked(value) {
                // `chunked` must be the last coding: the body is written chunked.
                out.truncate(out.len() - 2);
                out.extend_from_slice(b", chunked\r\n");
            }
            continue;
        } else if name == CONNECTION {
            close |= has_token(value, b"close");
            says_keep_alive |= has_token(value, b"keep-alive");
        } else if name == DATE {
            wrote_date = true;
        } else if name == TRAILER && (http10 || !can_chunk) {
            continue;
        }
        line(out, name.as_str(), value);
    }

    let encoder = match encoder {
        Some(encoder) => encoder,
        None => match hint.exact() {
            Some(0) => {
                if !no_length && !is_head {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
                Encoder::Length(0)
            }
            Some(length) => {
                if !no_length {
                    out.extend_from_slice(b"content-length: ");
                    out.extend_from_slice(itoa(length, &mut [0; 20]));
                    out.extend_from_slice(b"\r\n");
                }
                Encoder::Length(length)
            }
            None if http10 || !can_chunk => Encoder::Close,
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Encoder::Chunked
            }
        },
    };
    let encoder = if is_head || no_length {
        Encoder::None
    } else {
        encoder
    };
    close |= encoder == Encoder::Close;

    if http10 {
        if !close && !says_keep_alive {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    } else if close
        && !response
            .headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| has_token(v, b"close"))
    {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok((encoder, close))
}

/// The automatic answer to a head that cannot be served (431), as hyper wrote it.
pub(super) fn refusal(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\ncontent-length: 0\r\ndate: ");
    date(out);
    out.extend_from_slice(b"\r\n\r\n");
}

fn line(out: &mut Vec<u8>, name: &str, value: &HeaderValue) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn has_token(value: &HeaderValue, token: &[u8]) -> bool {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

fn ends_in_chunked(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// `n` in decimal, in the tail of `buf`.
pub(super) fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// An IMF-fixdate is always this long.
const DATE_LEN: usize = 29;

thread_local! {
    /// The second last formatted and its text: formatting once a second, not per response.
    static DATE_TEXT: Cell<(u64, [u8; DATE_LEN])> = const { Cell::new((u64::MAX, [0; DATE_LEN])) };
}

/// Appends the current time as an IMF-fixdate (`Tue, 01 Dec 2026 21:44:30 GMT`).
pub(super) fn date(out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let text = DATE_TEXT.with(|cached| {
        let (second, text) = cached.get();
        if second == now {
            return text;
        }
        let text = imf_fixdate(now);
        cached.set((now, text));
        text
    });
    out.extend_from_slice(&text);
}

fn imf_fixdate(secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    let (year, month, day) = crate::clock::civil_date(days);

    let mut text = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    text[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |text: &mut [u8; DATE_LEN], at: usize, n: u64| {
        text[at] = b'0' + (n / 10 % 10) as u8;
        text[at + 1] = b'0' + (n % 10) as u8;
    };
    two(&mut text, 5, day);
    text[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two(&mut text, 12, year / 100);
    two(&mut text, 14, year);
    two(&mut text, 17, of_day / 3600);
    two(&mut text, 20, of_day / 60 % 60);
    two(&mut text, 23, of_day % 60);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_an_imf_fixdate_on_known_instants() {
        assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&imf_fixdate(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            &imf_fixdate(1_796_161_470),
            b"Tue, 01 Dec 2026 21:44:30 GMT"
        );
    }

    #[test]
    fn itoa_writes_decimal() {
        assert_eq!(itoa(0, &mut [0; 20]), b"0");
        assert_eq!(itoa(81, &mut [0; 20]), b"81");
        assert_eq!(itoa(u64::MAX, &mut [0; 20]), b"18446744073709551615");
    }
}
