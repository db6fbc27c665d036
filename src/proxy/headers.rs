//! Header hygiene on both legs: hop-by-hop removal (RFC 9110 §7.6.1), `X-Forwarded-*`, and
//! rewriting `Location`/`Content-Location` that point at the target back to the proxy.

use std::net::IpAddr;

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers that never cross the proxy, whatever `Connection` says.
/// `Proxy-Authorization` is the client's credential for this hop: it must never reach a target,
/// with or without configured clients.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Headers that `Connection` cannot remove: the request would go on addressed elsewhere or
/// without the credential it means to pass through.
const NOT_CONNECTION_NAMED: [HeaderName; 2] = [header::HOST, header::AUTHORIZATION];

/// Removes the hop-by-hop headers and every header named on any `Connection` line, except
/// `Host`, `Authorization` and `keep` (the route's session-key header: a client that named it
/// would otherwise fall out of its own session).
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep: Option<&HeaderName>) {
    // Most messages carry none: one pass over the few headers present is cheaper than a
    // lookup per hop-by-hop name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|line| line.as_bytes().split(|byte| *byte == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .filter(|name| !NOT_CONNECTION_NAMED.contains(name) && Some(name) != keep)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether `name` is one of [`HOP_BY_HOP`], asked for every header of every message: the names
/// are compared where they stand instead of through a copy of the array, whose two custom
/// names would be built and dropped on each call.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || matches!(name.as_str(), "proxy-connection" | "keep-alive")
}

const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A client address as an `X-Forwarded-For` element.
pub fn forwarded_for(client_ip: IpAddr) -> HeaderValue {
    // An address always renders as a valid header value; RFC 7239's "unknown" is the fallback
    // that needs no unwrap.
    HeaderValue::try_from(client_ip.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Appends the client (`client`, from [`forwarded_for`]) to `X-Forwarded-For` and sets
/// `X-Forwarded-Proto`/`-Host` to what the client used to reach the proxy.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    proto: &'static str,
    client_host: Option<&HeaderValue>,
) {
    // One lookup of the name for reading and writing: this runs for every request.
    match headers.entry(FORWARDED_FOR) {
        Entry::Occupied(mut earlier) => {
            let first = earlier.get();
            let mut value = Vec::with_capacity(first.len() + 2 + client.len());
            value.extend_from_slice(first.as_bytes());
            value.extend_from_slice(b", ");
            value.extend_from_slice(client.as_bytes());
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                earlier.insert(value);
            }
        }
        Entry::Vacant(none) => {
            none.insert(client.clone());
        }
    }
    headers.insert(FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = client_host {
        headers.insert(FORWARDED_HOST, host.clone());
    }
}

/// How paths map between the proxy and the target for one route, for rewriting `Location`.
#[derive(Debug, Clone)]
pub struct PathMap {
    /// The target's origin, `scheme://host[:port]`, compared case-insensitively.
    pub upstream_origin: String,
    /// The target-side path the route's paths start with, without trailing `/` (maybe empty).
    pub upstream_base: String,
    /// The client-side path that replaces `upstream_base` (the prefix when it is stripped).
    pub client_base: String,
}

impl PathMap {
    /// The client-side location for a target-side one, or `None` when it points elsewhere.
    pub fn to_client(&self, location: &str, client_origin: &str) -> Option<String> {
        let path = if location.starts_with('/') && !location.starts_with("//") {
            location
        } else {
            let origin_len = self.upstream_origin.len();
            let head = location.get(..origin_len)?;
            if !head.eq_ignore_ascii_case(&self.upstream_origin) {
                return None;
            }
            let rest = &location[origin_len..];
            if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
                return None;
            }
            rest
        };
        let rest = path.strip_prefix(self.upstream_base.as_str())?;
        if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
            return None;
        }
        let origin = if location.starts_with('/') {
            ""
        } else {
            client_origin
        };
        Some(format!("{origin}{}{rest}", self.client_base))
    }
}

/// Rewrites `Location` and `Content-Location` that point at the target.
pub fn rewrite_locations(headers: &mut HeaderMap, map: &PathMap, client_origin: &str) {
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if let Some(rewritten) = map.to_client(value, client_origin) {
            if rewritten != value {
                if let Ok(rewritten) = HeaderValue::from_str(&rewritten) {
                    headers.insert(name, rewritten);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> PathMap {
        PathMap {
            upstream_origin: "https://osmc.example.com".into(),
            upstream_base: "/api".into(),
            client_base: "/osmc".into(),
        }
    }

    #[test]
    fn the_quick_hop_by_hop_check_names_exactly_the_hop_by_hop_list() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            "host",
            "authorization",
            "cookie",
            "x-forwarded-for",
            "keep-alive-x",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn absolute_location_at_the_target_points_back_at_the_proxy() {
        assert_eq!(
            map().to_client(
                "https://OSMC.example.com/api/users/7?x=1",
                "http://proxy:8080"
            ),
            Some("http://proxy:8080/osmc/users/7?x=1".into())
        );
    }

    #[test]
    fn absolute_path_location_keeps_being_relative() {
        assert_eq!(
            map().to_client("/api/users/7", "http://proxy:8080"),
            Some("/osmc/users/7".into())
        );
    }

    #[test]
    fn location_elsewhere_is_left_alone() {
        assert_eq!(
            map().to_client("https://login.example.com/x", "http://p"),
            None
        );
        assert_eq!(
            map().to_client("https://osmc.example.com.evil/api", "http://p"),
            None
        );
        assert_eq!(
            map().to_client("https://osmc.example.com/apiary", "http://p"),
            None
        );
        assert_eq!(map().to_client("//osmc.example.com/api", "http://p"), None);
    }

    #[test]
    fn connection_named_headers_are_removed_with_the_standard_set() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut headers, None);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn every_connection_line_is_read_and_proxy_authorization_always_goes() {
        let mut headers = HeaderMap::new();
        headers.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static("x-first, X-Second"),
        );
        headers.append(header::CONNECTION, HeaderValue::from_static(" x-third ,"));
        for name in ["x-first", "x-second", "x-third"] {
            headers.insert(name, HeaderValue::from_static("1"));
        }
        headers.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut headers, None);
        assert_eq!(
            headers.keys().collect::<Vec<_>>(),
            [header::ACCEPT],
            "{headers:?}"
        );

        let mut alone = HeaderMap::new();
        alone.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Bearer t"),
        );
        remove_hop_by_hop(&mut alone, None);
        assert!(alone.is_empty(), "{alone:?}");
    }

    #[test]
    fn connection_cannot_remove_host_authorization_or_the_session_key_header() {
        let tenant = HeaderName::from_static("x-tenant");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("X-Tenant, Host, Authorization, x-other"),
        );
        headers.insert(&tenant, HeaderValue::from_static("t1"));
        headers.insert(header::HOST, HeaderValue::from_static("localhost"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        headers.insert("x-other", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers, Some(&tenant));
        assert_eq!(headers.len(), 3, "{headers:?}");
        for name in [&tenant, &header::HOST, &header::AUTHORIZATION] {
            assert!(headers.contains_key(name), "{name} was removed");
        }
    }
}
