//! `host[:port]` as written in a `Host` header, an `Origin` or a config's `hosts` list: shared
//! vocabulary at the crate root (it depends on nothing above it), so that config validation and
//! the listeners' name checks parse a name the same way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `host[:port]` as written in a `Host` header, an `Origin` or a `hosts` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authority<'a> {
    /// As written (compare case-insensitively), without a trailing dot; an IPv6 literal
    /// without its brackets.
    pub host: &'a str,
    pub port: Option<u16>,
}

impl<'a> Authority<'a> {
    /// `None` for anything that is not a host name or IP literal with an optional port.
    pub fn parse(text: &'a str) -> Option<Authority<'a>> {
        let (host, port) = match text.strip_prefix('[') {
            Some(bracketed) => {
                let (literal, rest) = bracketed.split_once(']')?;
                literal.parse::<Ipv6Addr>().ok()?;
                (literal, rest)
            }
            // A name's bytes checked in the same pass that finds the port: this runs for the
            // `Host` of every request.
            None => {
                let name_byte =
                    |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
                let end = text
                    .bytes()
                    .position(|b| !name_byte(b))
                    .unwrap_or(text.len());
                if text.as_bytes().get(end).is_some_and(|&b| b != b':') {
                    return None;
                }
                text.split_at(end)
            }
        };
        let port = match port {
            "" | ":" => None,
            port => Some(port.strip_prefix(':')?.parse::<u16>().ok()?),
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() {
            return None;
        }
        Some(Authority { host, port })
    }

    /// The host as an IP address (IPv4-mapped IPv6 as IPv4), if it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        // Only a bracketed host (an IPv6 literal) holds a colon: a name is tried as IPv4 alone.
        let ip = if self.host.contains(':') {
            self.host.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            self.host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        };
        ip.map(|ip| ip.to_canonical())
    }
}
